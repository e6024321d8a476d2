"""`bitbake-server`: the process bb.server.process.BitBakeServer starts for the cooker.

BitBakeServer._startServer runs `<python> .../bin/bitbake-server` with ten arguments: the magic
word, the lock file's descriptor, the "ready" pipe's descriptor, the log file, the lock file's
name, the socket's name, the idle timeout, the profiling list, and the XML-RPC host and port.
This program reads them, sends all its output to the log file (bitbake-cookerdaemon.log in the
build directory, where server-side tracebacks are found), forwards the server's log records to
the UI as events, and runs bb.server.process.execServer.
"""

import ast
import logging
import os
import sys
import warnings

MAGIC = "decafbad"


def _parse(argv):
    if len(argv) != 11 or not argv[1].startswith(MAGIC):
        return None
    lockfd, readyfd, logfile, lockname, sockname, timeout, profile, host, port = argv[2:]
    try:
        profile_list = ast.literal_eval(profile)
    except (ValueError, SyntaxError):
        profile_list = []
    return {
        "lockfd": int(lockfd),
        "readypipeinfd": int(readyfd),
        "logfile": logfile,
        "lockname": lockname,
        "sockname": sockname,
        "server_timeout": float(timeout),
        "profile": list(profile_list or []),
        "xmlrpcinterface": (None if host == "None" else host, int(port)),
    }


def _redirect_stdio(logfile):
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    log = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o664)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    # One buffer for both, so that tracebacks and server messages keep their order.
    sys.stderr = sys.stdout


def main(argv=None):
    argv = list(sys.argv if argv is None else argv)
    args = _parse(argv)
    if args is None:
        sys.stderr.write("bitbake-server is started by bitbake itself; it is not a command to run\n")
        return 1
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*use\.of\.fork.*")
    _redirect_stdio(args.pop("logfile"))

    import bb
    import bb.event
    import bb.server.process

    from bbharness import check_bitbake_version

    problem = check_bitbake_version()
    if problem:
        print(f"bitbake-server: {problem}", flush=True)
        return 1
    logging.getLogger("BitBake").addHandler(bb.event.LogHandler())
    bb.server.process.execServer(
        args["lockfd"],
        args["readypipeinfd"],
        args["lockname"],
        args["sockname"],
        args["server_timeout"],
        args["xmlrpcinterface"],
        args["profile"],
    )
    return 0
