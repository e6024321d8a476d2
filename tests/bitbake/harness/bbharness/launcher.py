"""The `bitbake` command: BitBake's own command line and UI (bb.main) over a server process.

Unlike upstream's launcher it does not insist on the en_US.UTF-8 locale
(bb.utils.check_system_locale); any UTF-8 file system encoding (C.UTF-8 too) is enough.
"""

import sys
import traceback
import warnings


def main(argv=None):
    argv = list(sys.argv if argv is None else argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*use\.of\.fork.*")
    if sys.getfilesystemencoding().lower().replace("-", "").replace("_", "") != "utf8":
        sys.stderr.write(
            f"bitbake: the file system encoding is {sys.getfilesystemencoding()}, not UTF-8; "
            "set a UTF-8 locale (e.g. LANG=C.UTF-8)\n"
        )
        return 1
    try:
        import bb
        import bb.cookerdata
        import bb.main
    except ImportError as e:
        sys.stderr.write(f"bitbake: cannot import BitBake ({e}); run tests/bitbake/install-harness\n")
        return 1
    from bbharness import check_bitbake_version

    problem = check_bitbake_version()
    if problem:
        sys.stderr.write(f"bitbake: {problem}\n")
        return 1
    try:
        params = bb.main.BitBakeConfigParameters(argv)
        status = bb.main.bitbake_main(params, bb.cookerdata.CookerConfiguration())
    except bb.main.BBMainException as e:
        sys.stderr.write(f"{e}\n")
        return 1
    except bb.BBHandledException:
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception:
        traceback.print_exc()
        return 1
    if status is None:
        return 0
    return status if isinstance(status, int) else 1
