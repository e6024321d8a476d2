# base.bbclass of meta-testcore: what every recipe has (BitBake inherits this class itself).

# Messages from shell functions. While BitBake runs a shell function it reads the FIFO
# ${T}/fifo.<pid of the task> (bb/build.py): NUL-terminated records "<command> <message>", the
# command being bbplain, bbnote, bbverbnote, bbwarn, bberror, bbfatal, bbfatal_log or bbdebug.
# Outside BitBake (no FIFO) the message goes to stdout instead.
LOGFIFO = "${T}/fifo.${@os.getpid()}"

bb_log_record() {
    # $1: record type, $2: prefix when printing to stdout, then the message
    rec_type=$1
    rec_prefix=$2
    shift 2
    if [ -p "${LOGFIFO}" ]; then
        printf '%s %s\000' "$rec_type" "$*" > "${LOGFIFO}"
    else
        echo "$rec_prefix$*"
    fi
}

bbplain() {
    bb_log_record bbplain "" "$@"
}

bbnote() {
    bb_log_record bbnote "NOTE: " "$@"
}

bbverbnote() {
    bb_log_record bbverbnote "NOTE: " "$@"
}

bbwarn() {
    bb_log_record bbwarn "WARNING: " "$@"
}

bberror() {
    bb_log_record bberror "ERROR: " "$@"
}

# Stops the shell function with a failure after logging the message.
bbfatal() {
    bb_log_record bbfatal "ERROR: " "$@"
    exit 1
}

# As bbfatal, and the task's log is shown even when BitBake is not verbose.
bbfatal_log() {
    bb_log_record bbfatal_log "ERROR: " "$@"
    exit 1
}

# bbdebug LEVEL MESSAGE
bbdebug() {
    bb_log_record bbdebug "DEBUG: " "$@"
}

# The default target: doing nothing itself, it stands for every task it comes after.
do_build[noexec] = "1"
do_build () {
    :
}
addtask build

python do_listtasks () {
    tasks = {}
    for name in d.keys():
        if d.getVarFlag(name, "task"):
            tasks[name] = d.getVarFlag(name, "doc") or ""
    width = max(len(t) for t in tasks)
    for name in sorted(tasks):
        bb.plain("%s  %s" % (name.ljust(width), tasks[name]))
}
do_listtasks[doc] = "Lists the recipe's tasks"
do_listtasks[nostamp] = "1"
addtask listtasks

CLEANFUNCS ?= ""
python do_clean () {
    import glob
    import shutil
    workdir = d.getVar("WORKDIR")
    bb.note("Removing %s" % workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    stamps = "%s.*" % d.getVar("STAMP")
    bb.note("Removing %s" % stamps)
    for path in glob.glob(stamps):
        os.remove(path)
    for func in (d.getVar("CLEANFUNCS") or "").split():
        bb.build.exec_func(func, d)
}
do_clean[doc] = "Removes the recipe's work directory and stamps"
do_clean[nostamp] = "1"
addtask clean
