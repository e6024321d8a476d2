SUMMARY = "failing: a recipe whose task fails, for the harness tests"
LICENSE = "MIT"

do_fail () {
    bbwarn "failing is about to fail"
    false
}
do_fail[doc] = "Fails"
addtask fail
