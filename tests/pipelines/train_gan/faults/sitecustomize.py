"""Fault injection for the resume tests: signal this process at a chosen file write.

Put this folder on PYTHONPATH and set SRGAN_KILL="<when>:<part of the destination path>:<n>":
at the n-th atomic rename (os.replace) onto a path containing that part, the process kills
itself with SIGKILL `before` the rename (a checkpoint write cut in the middle: its temporary
file is written, the target is not) or `after` it. Nothing else changes, so the run is the
real `kedro run` up to the moment of the kill.

A fourth field names whom: `parent` kills the process's parent instead (a data-parallel
training rank's `kedro run`, killed under its running ranks; the rank then waits, so a rank
that outlived its `kedro run` would be seen writing on afterwards), `group` signals this
process's whole process group (Ctrl-C in a terminal, Slurm), `self` (the default) only this
process; `sockets` kills nothing but writes the sockets its `kedro run` tree listens on to the
file $SRGAN_SOCKETS. A fifth names the signal (default KILL): with TERM or INT the process
goes on, so that it can act on the signal as it would on one from outside, at a moment that
is certain (sent to the parent, it first waits until the parent has passed it back).
`pause` neither kills nor signals: the process waits at that rename until the file named by
SRGAN_PAUSE_UNTIL exists, so a test can run something else at a certain point of a run (not a
timing guess) and then let it go on.

SRGAN_RECORD_SAMPLES="<file>" records the samples each training process serves (below).
"""

import os
import signal
import time

_spec = os.environ.get("SRGAN_KILL")
if _spec:
    _when, _part, _nth, *_rest = _spec.split(":")
    _whom = _rest[0] if _rest else "self"
    _signal = getattr(signal, f"SIG{_rest[1]}") if len(_rest) > 1 else signal.SIGKILL
    _seen = [0]

    def _die():
        if _whom == "pause":
            while not os.path.exists(os.environ["SRGAN_PAUSE_UNTIL"]):
                time.sleep(0.05)
            return
        if _whom == "sockets":  # not a fault: a record of what listens, at a certain moment
            _record_listening_sockets(os.environ["SRGAN_SOCKETS"])
        elif _whom == "parent":
            os.kill(os.getppid(), _signal)
        elif _whom == "group":
            os.killpg(os.getpgid(0), _signal)
        else:
            os.kill(os.getpid(), _signal)
        if _signal == signal.SIGKILL and _whom == "parent":
            time.sleep(3)
        elif _whom == "parent":  # until the parent has passed the signal back (torch does)
            _wait_for_own_stop_request()

    def _wait_for_own_stop_request(limit_s=60):
        import sys

        stop = sys.modules.get("srgan_pipeline.training.stop")
        deadline = time.monotonic() + limit_s
        while stop is not None and not stop.requested() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _record_listening_sockets(log):
        """The /proc/net/tcp{,6} lines of the sockets listened on by this process's parent (a
        rank's `kedro run`) and every process under it. By process tree, not process group:
        a `kedro run` started by pytest shares its group with pytest's other workers, whose
        tests' sockets are no part of this run."""
        tree, inodes = _tree_of(os.getppid()), set()
        for pid in tree:
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
            except OSError:  # gone meanwhile, or not ours to read
                continue
        with open(log, "w") as out:
            for table in ("/proc/net/tcp", "/proc/net/tcp6"):
                with open(table) as lines:
                    for line in list(lines)[1:]:
                        fields = line.split()
                        if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                            out.write(f"{table} {fields[1]}\n")

    def _tree_of(root):
        """``root`` and its descendants' process ids (from /proc/<pid>/stat's parent field)."""
        parents = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    parents[int(pid)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
        tree, grown = {root}, True
        while grown:
            below = {pid for pid, parent in parents.items() if parent in tree} - tree
            tree, grown = tree | below, bool(below)
        return tree

    _replace = os.replace

    def _replace_then_maybe_die(src, dst, *args, **kwargs):
        hit = _part in os.fspath(dst)
        if hit:
            _seen[0] += 1
        die = hit and _seen[0] == int(_nth)
        if die and _when == "before":
            _die()
        _replace(src, dst, *args, **kwargs)
        if die:
            _die()

    os.replace = _replace_then_maybe_die

# SRGAN_RECORD_SAMPLES=<file>: append "<rank> <tile index> <crop seed>" for every sample a
# training dataset serves (PatchDataset.__getitem__, as the DataLoader calls it), so a test sees
# which samples of the stream a run actually trained on, not the counters the loop keeps.
_record = os.environ.get("SRGAN_RECORD_SAMPLES")
if _record:
    import importlib.abc
    import importlib.util
    import sys

    class _RecordSamples(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != "srgan_pipeline.patches":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run_module = spec.loader.exec_module

            def exec_module(module):
                run_module(module)
                served = module.PatchDataset.__getitem__

                def record(self, index):
                    with open(_record, "a") as log:
                        log.write(f"{os.environ.get('RANK', '0')} {index[0]} {index[1]}\n")
                    return served(self, index)

                module.PatchDataset.__getitem__ = record

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _RecordSamples())
