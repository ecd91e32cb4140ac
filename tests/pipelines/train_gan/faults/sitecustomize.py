"""Fault injection for the resume tests: kill this process with SIGKILL at a chosen file write.

Put this folder on PYTHONPATH and set SRGAN_KILL="<when>:<part of the destination path>:<n>":
at the n-th atomic rename (os.replace) onto a path containing that part, the process kills
itself `before` the rename (a checkpoint write cut in the middle: its temporary file is
written, the target is not) or `after` it. Nothing else changes, so the run is the real
`kedro run` up to the moment of the kill.

A fourth field `parent` kills the process's parent instead: a data-parallel training rank's
`kedro run` (the rank writes the checkpoints), killed under its running ranks. The rank then
waits, so a rank that outlived its `kedro run` would be seen writing on afterwards.

A fourth field `pause` neither kills nor signals: the process waits at that rename until the
file named by SRGAN_PAUSE_UNTIL exists, so a test can run something else at a certain point of
a run (not a timing guess) and then let it go on.

SRGAN_RECORD_SAMPLES="<file>" records the samples each training process serves (below).
"""

import os
import signal
import time

_spec = os.environ.get("SRGAN_KILL")
if _spec:
    _when, _part, _nth, *_whom = _spec.split(":")
    _seen = [0]

    def _die():
        if _whom == ["pause"]:
            while not os.path.exists(os.environ["SRGAN_PAUSE_UNTIL"]):
                time.sleep(0.05)
        elif _whom == ["parent"]:
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(3)
        else:
            os.kill(os.getpid(), signal.SIGKILL)

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
