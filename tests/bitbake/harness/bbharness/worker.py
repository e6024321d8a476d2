"""`bitbake-worker`: runs the tasks that BitBake's runqueue hands it, each in a forked child.

The runqueue (bb/runqueue.py) starts `<python> .../bin/bitbake-worker <magic>`, the magic being
"decafbad", with "bad" added when profiling and "beef" added for the worker that runs [fakeroot]
tasks (that one is started under FAKEROOTCMD). Then:

  server -> worker, on stdin:  <name> + 4-byte big-endian length + pickle + </name>,
      name: cookerconfig, extraconfigdata, workerdata, newtaskhashes, runtask, finishnow, quit
  worker -> server, on stdout: <event> + pickled event + </event>
                               <exitcode> + pickled (task id, exit status) + </exitcode>

The worker parses the base configuration once (CookerDataBuilder in worker mode). For every
`runtask` it forks a child that parses the recipe, sets up the task's environment from the
exported variables and runs bb.build.exec_task; the child's events come back over a private
pipe, each as a 4-byte length and a complete <event> frame, so that the frames of tasks running
side by side are never interleaved. The worker never blocks on the server: replies are queued
and written when stdout is writable, while stdin and the children are still read.

Fakeroot: with Debian's fakeroot (FAKEROOTCMD = "fakeroot") the session is described by
variables fakeroot puts into the worker's environment (FAKEROOTKEY, LD_PRELOAD, ...). A fakeroot
worker passes them on to its [fakeroot] tasks, whose environment is otherwise rebuilt from the
datastore, so that their shell functions and subprocesses share the worker's fakeroot session
(the python parts already run inside it). FAKEROOTENV, FAKEROOTNOENV and FAKEROOTDIRS work as
in BitBake.

Not supported: disabling the network of tasks without [network] (upstream does it with a user
namespace), hash equivalence and the PR service.
"""

import logging
import multiprocessing
import os
import pickle
import select
import signal
import sys
import time
import traceback
import warnings

MAGIC = "decafbad"
FAKEROOT_SESSION_VARS = ("FAKEROOTKEY", "FAKED_MODE", "FAKEROOT_FD_BASE", "LD_LIBRARY_PATH", "LD_PRELOAD")

logger = logging.getLogger("BitBake")


class ProtocolError(Exception):
    pass


def frame(tag, payload):
    return b"<" + tag + b">" + payload + b"</" + tag + b">"


class Outbox:
    """Frames for the server; written to stdout whenever it can take them, never blocking."""

    def __init__(self, fd):
        self.fd = fd
        self.pending = bytearray()
        os.set_blocking(fd, False)

    def put(self, data):
        self.pending += data
        self.flush()

    def flush(self):
        while self.pending:
            try:
                written = os.write(self.fd, self.pending)
            except BlockingIOError:
                return
            except BrokenPipeError:
                self.pending.clear()  # the server is gone; nobody reads this
                return
            del self.pending[:written]

    def drain(self, timeout=30.0):
        while self.pending:
            _, writable, _ = select.select([], [self.fd], [], timeout)
            if not writable:
                return
            self.flush()


class TaskChannel:
    """The read end of one task child's event pipe: length-prefixed <event> frames."""

    def __init__(self, fd, task, outbox):
        self.fd = fd
        self.task = task
        self.outbox = outbox
        self.buffer = bytearray()
        self.eof = False
        os.set_blocking(fd, False)

    def read(self):
        """Forward every complete frame; False when nothing (more) was there."""
        if self.eof:
            return False
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return False
        if not data:
            self.eof = True  # the child has exited or closed its end; waitpid will tell
            return False
        self.buffer += data
        while len(self.buffer) >= 4:
            size = int.from_bytes(self.buffer[:4], "big")
            if len(self.buffer) < 4 + size:
                break
            self.outbox.put(bytes(self.buffer[4 : 4 + size]))
            del self.buffer[: 4 + size]
        return True

    def close(self):
        while self.read():
            pass
        if self.buffer:
            logger.warning("bitbake-worker: task %s left a partial event (%d bytes)", self.task, len(self.buffer))
        os.close(self.fd)


def _terminate_session(signum, _frame):
    """SIGTERM/SIGHUP in a task child: take down everything the task started, then itself."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        os.killpg(0, signal.SIGTERM)
    finally:
        os._exit(128 + signum)


class Worker:
    def __init__(self, magic):
        self.fakeroot = "beef" in magic[len(MAGIC) :]
        self.outbox = Outbox(sys.stdout.fileno())
        self.inbox = bytearray()
        self.cookerconfig = None
        self.databuilder = None
        self.workerdata = None
        self.extraconfigdata = {}
        self.children = {}  # pid -> TaskChannel
        self.session = {k: os.environ[k] for k in FAKEROOT_SESSION_VARS if k in os.environ} if self.fakeroot else {}
        self.handlers = {
            b"cookerconfig": self.on_cookerconfig,
            b"extraconfigdata": self.on_extraconfigdata,
            b"workerdata": self.on_workerdata,
            b"newtaskhashes": self.on_newtaskhashes,
            b"runtask": self.on_runtask,
            b"finishnow": self.on_finishnow,
            b"ping": self.on_ping,
            b"quit": self.on_quit,
        }
        self.quitting = False
        # A child's exit wakes the loop at once (SIGCHLD through a pipe).
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
        signal.set_wakeup_fd(self.wake_w)

    def wait_for(self, fds, timeout):
        """The readable ones of fds (the wake-up pipe is watched too), stdout flushed when it can take more."""
        readable, writable, _ = select.select(
            [*fds, self.wake_r], [self.outbox.fd] if self.outbox.pending else [], [], timeout
        )
        if writable:
            self.outbox.flush()
        if self.wake_r in readable:
            try:
                while os.read(self.wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        return readable

    # -- events ---------------------------------------------------------------------------

    def fire(self, event, _d):
        self.outbox.put(frame(b"event", pickle.dumps(event)))

    # -- the loop -------------------------------------------------------------------------

    def serve(self):
        stdin = sys.stdin.fileno()
        while not self.quitting:
            readable = self.wait_for([stdin, *(ch.fd for ch in self.children.values() if not ch.eof)], 1.0)
            if stdin in readable:
                data = os.read(stdin, 1 << 20)
                if not data:  # the server went away without saying quit
                    self.on_finishnow(None)
                    self.wait_children(timeout=10.0)
                    return 1
                self.inbox += data
                self.dispatch()
            for channel in list(self.children.values()):
                if channel.fd in readable:
                    channel.read()
            self.reap()
        self.wait_children(timeout=60.0)
        self.outbox.drain()
        return 0

    def dispatch(self):
        while self.inbox and not self.quitting:
            if not self.inbox.startswith(b"<"):
                raise ProtocolError(f"unexpected data from the server: {bytes(self.inbox[:40])!r}")
            close = self.inbox.find(b">")
            if close < 0:
                return
            name = bytes(self.inbox[1:close])
            handler = self.handlers.get(name)
            if handler is None:
                raise ProtocolError(f"unknown message <{name.decode(errors='replace')}>")
            start = close + 1 + 4
            if len(self.inbox) < start:
                return
            size = int.from_bytes(self.inbox[close + 1 : start], "big")
            closing = b"</" + name + b">"
            end = start + size + len(closing)
            if len(self.inbox) < end:
                return
            if self.inbox[start + size : end] != closing:
                raise ProtocolError(f"message <{name.decode()}> is not closed where its length says")
            payload = bytes(self.inbox[start : start + size])
            del self.inbox[:end]
            handler(pickle.loads(payload))

    def reap(self):
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            channel = self.children.pop(pid, None)
            if channel is None:
                continue
            channel.close()
            if os.WIFSIGNALED(status):
                code = 128 + os.WTERMSIG(status)
            else:
                code = os.WEXITSTATUS(status)
            self.outbox.put(frame(b"exitcode", pickle.dumps((channel.task, code))))

    def wait_children(self, timeout):
        deadline = time.monotonic() + timeout
        while self.children and time.monotonic() < deadline:
            readable = self.wait_for([ch.fd for ch in self.children.values() if not ch.eof], 0.2)
            for channel in list(self.children.values()):
                if channel.fd in readable:
                    channel.read()
            self.reap()

    # -- messages -------------------------------------------------------------------------

    def on_cookerconfig(self, config):
        import bb.cookerdata

        self.cookerconfig = config
        self.databuilder = bb.cookerdata.CookerDataBuilder(config, worker=True)
        self.databuilder.parseBaseConfiguration(worker=True)

    def on_extraconfigdata(self, data):
        self.extraconfigdata = data or {}

    def on_workerdata(self, data):
        import bb.build
        import bb.msg

        self.workerdata = data
        bb.build.verboseShellLogging = data["build_verbose_shell"]
        bb.build.verboseStdoutLogging = data["build_verbose_stdout"]
        bb.msg.loggerDefaultLogLevel = data["logdefaultlevel"]
        bb.msg.loggerDefaultDomains = data["logdefaultdomain"]
        for mcdata in self.databuilder.mcdata.values():
            mcdata.setVar("PRSERV_HOST", data["prhost"])
            mcdata.setVar("BB_HASHSERVE", data["hashservaddr"])
            mcdata.setVar("__bbclasstype", "recipe")

    def on_newtaskhashes(self, hashes):
        self.workerdata["newhashes"] = hashes

    def on_ping(self, _):
        logger.warning("Pong from bitbake-worker!")

    def on_quit(self, _):
        self.quitting = True

    def on_finishnow(self, _):
        for pid in list(self.children):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def on_runtask(self, runtask):
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(read_fd)
                status = self.run_task_child(runtask, write_fd)
            except BaseException:
                try:
                    traceback.print_exc()
                except BaseException:
                    pass
            finally:
                os._exit(status)
        os.close(write_fd)
        self.children[pid] = TaskChannel(read_fd, runtask["task"], self.outbox)

    # -- in the task child ----------------------------------------------------------------

    def run_task_child(self, runtask, event_fd):
        import bb
        import bb.build
        import bb.data
        import bb.event
        import bb.utils

        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(self.wake_r)
        os.close(self.wake_w)
        bb.utils.signal_on_parent_exit("SIGTERM")
        os.setsid()
        signal.signal(signal.SIGTERM, _terminate_session)
        signal.signal(signal.SIGHUP, _terminate_session)
        # stdin and stdout belong to the server's protocol; the task gets neither.
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        for channel in self.children.values():
            os.close(channel.fd)
        self.children = {}

        lock = multiprocessing.Lock()  # the task may fork helpers that log too

        def child_fire(event, _d):
            data = frame(b"event", pickle.dumps(event))
            data = len(data).to_bytes(4, "big") + data
            with lock:
                view = memoryview(data)
                while view:
                    view = view[os.write(event_fd, view) :]

        bb.event.worker_pid = os.getpid()
        bb.event.worker_fire = child_fire

        taskname = runtask["taskname"]
        taskdep = runtask["taskdep"]
        dry_run = bool(self.cookerconfig.dry_run or runtask["dry_run"])
        fakeroot = taskname in (taskdep.get("fakeroot") or {}) and not dry_run

        umask = (taskdep.get("umask") or {}).get(taskname) or self.workerdata["umask"]
        if umask:
            os.umask(bb.utils.to_filemode(umask))

        try:
            d = self.task_datastore(runtask)
            self.task_environment(d, runtask, fakeroot)
        except Exception:
            if not runtask["quieterrors"]:
                logger.critical(traceback.format_exc())
            return 1
        bb.utils.set_process_name(f"{d.getVar('PN')}:{taskname.removeprefix('do_')}")
        sys.stdout.flush()
        sys.stderr.flush()
        if dry_run:
            return 0
        return bb.build.exec_task(runtask["fn"], taskname, d, self.cookerconfig.profile)

    def task_datastore(self, runtask):
        import bb.cache
        import bb.parse

        fn = runtask["fn"]
        taskname = runtask["taskname"]
        mc = bb.cache.virtualfn2realfn(fn)[2]
        base = self.databuilder.mcdata[mc]
        base.setVar("BB_WORKERCONTEXT", "1")
        base.setVar("BB_TASKDEPDATA", runtask["taskdepdata"])
        base.setVar("BB_CURRENTTASK", taskname.removeprefix("do_"))
        if self.cookerconfig.limited_deps:
            base.setVar("BB_LIMITEDDEPS", "1")
        for var in ("buildname", "date", "time"):
            base.setVar(var.upper(), self.workerdata[var])
        for var, value in self.extraconfigdata.items():
            base.setVar(var, value)

        siggen = bb.parse.siggen
        siggen.set_taskdata(self.workerdata["sigdata"])
        if "newhashes" in self.workerdata:
            siggen.set_taskhashes(self.workerdata["newhashes"])

        d = self.databuilder.parseRecipe(fn, runtask["appends"], runtask["layername"])
        d.setVar("BB_TASKHASH", runtask["taskhash"])
        d.setVar("BB_UNIHASH", runtask["unihash"])
        siggen.setup_datacache_from_datastore(fn, d)
        if runtask["quieterrors"]:
            d.setVarFlag(taskname, "quieterrors", "1")
        return d

    def task_environment(self, d, runtask, fakeroot):
        import bb.data
        import bb.utils

        exported = list(bb.data.exported_vars(d))
        bb.utils.empty_environment()
        for var, value in exported:
            os.environ[var] = value

        extra = (runtask["fakerootenv"] if fakeroot else runtask["fakerootnoenv"]) or ""
        for item in extra.split():
            var, _, value = item.partition("=")
            os.environ[var] = value
            d.setVar(var, value)
            d.setVarFlag(var, "export", "1")
        if fakeroot:
            os.environ.update(self.session)
            for directory in (runtask["fakerootdirs"] or "").split():
                bb.utils.mkdirhier(directory)

        for var in (d.getVarFlag(runtask["taskname"], "exports") or "").split():
            d.setVarFlag(var, "export", "1")
            value = d.getVar(var)
            if value is not None:
                os.environ[var] = value


def main(argv=None):
    argv = list(sys.argv if argv is None else argv)
    if len(argv) != 2 or not argv[1].startswith(MAGIC):
        sys.stderr.write("bitbake-worker is started by bitbake itself; it is not a command to run\n")
        return 1
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*use\.of\.fork.*")

    import bb
    import bb.event
    import bb.fetch2  # the fetchers register themselves on import, as in the server

    from bbharness import check_bitbake_version

    problem = check_bitbake_version()
    if problem:
        sys.stderr.write(f"bitbake-worker: {problem}\n")
        return 1
    worker = Worker(argv[1])
    logger.addHandler(bb.event.LogHandler())
    bb.event.worker_fire = worker.fire

    def stop(signum, _frame):
        worker.on_finishnow(None)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    if argv[1][len(MAGIC) :].startswith("bad"):
        import cProfile

        profile = cProfile.Profile()
        try:
            return profile.runcall(worker.serve)
        finally:
            profile.dump_stats("profile-worker.log")
    try:
        return worker.serve()
    except Exception:
        traceback.print_exc()
        worker.on_finishnow(None)
        return 1
