"""The quickstart per CPU class: `kedro run --env=quickstart` under each oneDNN ISA limit.

For each CPU class and seed, in a run folder of its own (so each run has its own data/ and its
own MLflow store, data/..., mlflow.db):
  * the first seed of a class (seed 0 by default) runs README's whole command,
    `kedro run --env=quickstart`, on a fresh data/ (install excluded);
  * each other seed runs `kedro run --env=quickstart --pipelines=train_gan,evaluation` with
    train_gan.pretrain.seed and train_gan.adversarial.seed set, on a copy of that class's
    data_prep output ("train+eval" in the table).
Wall time is measured around the subprocess (with /usr/bin/time -v's peak RSS where it exists).
From each run's outputs: the held-out photographs' rows of data/08_reporting/
evaluation_summary.json (SRResNet and SRGAN PSNR-Y minus bicubic's), and from its MLflow run
the precision each phase trained in (tags <phase>.amp_bf16, <phase>.amp_bf16_reason) and the
phase-1 steps it ran (tag pretrain.final_step; else the log's "pretrain stopped at step N").
Issue 24 asks SRResNet >= +0.3 dB over bicubic for seeds 0, 1 and 2 on each class.

The classes (torch's kernels under these limits; `auto` precision follows them, devices.py):
  native             no limit
  AVX512_CORE_BF16   ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 (no AMX)
  AVX512_CORE        ONEDNN_MAX_CPU_ISA=AVX512_CORE, ATEN_CPU_CAPABILITY=avx512 (no bf16)
  AVX2               ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2

The code run is a fresh `git clone` of this checkout's HEAD (committed code only), or the tree
at --project as it is (copied without its data files, .git and MLflow store). One CSV row per
finished run (--csv), with lscpu's model name, the date and the commit.

    python benchmarks/quickstart.py                    # 4 classes, seed 0: ~45 min on 2 cores
    python benchmarks/quickstart.py --seeds 0 1 2      # the issue's check: ~2 h on 2 cores
    python benchmarks/quickstart.py --classes native AVX2 --seeds 0 1 --csv /tmp/dry.csv \\
        --params train_gan.pretrain.iterations=4,train_gan.adversarial.iterations=2   # dry run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_csv import append_row

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "benchmarks" / "results" / "quickstart.csv"
CLASSES = {
    "native": {},
    "AVX512_CORE_BF16": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
    "AVX512_CORE": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "ATEN_CPU_CAPABILITY": "avx512"},
    "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}
# Cleared from the inherited environment for every run, so "native" is native.
LIMITS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
HELDOUT = "skimage_heldout"  # conf/quickstart's held-out photographs (chelsea, rocket)
TARGET_DB = 0.3
# What train_gan and evaluation write; a seed's run folder gets the rest of the class's data/.
TRAIN_EVAL_OUTPUTS = ("06_models", "07_model_output", "08_reporting")
FIELDS = ["date", "cpu_model", "commit", "cpu_class", "seed", "run", "status", "wall_s",
          "peak_rss_mb", "pretrain_steps", "pretrain_stopped_because", "pretrain_precision",
          "pretrain_precision_reason", "adversarial_precision", "eval_set",
          "bicubic_psnr_y", "srresnet_vs_bicubic_db", "srgan_vs_bicubic_db", "params"]
STOP_LINE = re.compile(r"pretrain stopped at step (\d+) \(([^)]*)\)")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)"
    found = re.search(r"^Model name:\s*(.+)$", out, re.MULTILINE)
    return found.group(1).strip() if found else "unknown (lscpu has no Model name)"


def clone_head(into: Path) -> tuple[Path, str]:
    """A fresh clone of this checkout at its HEAD commit: what runs is what is committed."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(into)],
                   check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "--quiet", "--detach", commit],
                   check=True)
    return into, commit


def given_project(path: str) -> tuple[Path, str]:
    project = Path(path).resolve()
    if not (project / "conf" / "quickstart").is_dir() or not (project / "src").is_dir():
        sys.exit(f"--project {project}: not a checkout of this project (it needs conf/quickstart "
                 "and src/); leave --project out to run a fresh clone of this checkout's HEAD")
    described = subprocess.run(["git", "-C", str(project), "describe", "--always", "--dirty"],
                               capture_output=True, text=True)
    return project, described.stdout.strip() or "not a git checkout"


def copy_project(source: Path, dest: Path) -> None:
    """The project's files without its data files (data/'s folders and .gitkeep files stay),
    its git folder and its MLflow store: a run folder with a fresh data/."""
    data = source / "data"

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        skipped = {n for n in names if n in (".git", "mlruns", ".venv", "__pycache__")
                   or n.startswith("mlflow.db")}
        if here == data or data in here.parents:
            skipped |= {n for n in names if n != ".gitkeep" and not (here / n).is_dir()}
        return skipped

    shutil.copytree(source, dest, ignore=ignore, symlinks=True)


def copy_data_prep_output(first_run: Path, dest: Path) -> None:
    """The class's data_prep output (its data/ less what train_gan and evaluation write)."""
    for part in (first_run / "data").iterdir():
        if part.name not in TRAIN_EVAL_OUTPUTS and part.is_dir():
            shutil.rmtree(dest / "data" / part.name, ignore_errors=True)
            shutil.copytree(part, dest / "data" / part.name, symlinks=True)


def run_env(project: Path, cpu_class: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LIMITS}
    # kedro-mlflow takes the store from mlflow.yml (sqlite:///mlflow.db, in the project folder),
    # so the run folder of its own is what keeps runs apart; the variable names the same store
    # for any code that reads it instead.
    return {**env, **CLASSES[cpu_class], "PYTHONPATH": str(project / "src"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}


def run_kedro(project: Path, cpu_class: str, kedro_args: list[str]) -> tuple[int, float, float]:
    """(exit status, wall seconds, peak RSS in MB or nan) of one `kedro run`; its output goes to
    <project>/kedro.log."""
    cmd = [sys.executable, "-m", "kedro", "run", "--env=quickstart", *kedro_args]
    timed = Path("/usr/bin/time").exists()
    if timed:
        cmd = ["/usr/bin/time", "-v", "-o", str(project / "time.txt"), *cmd]
    with (project / "kedro.log").open("w") as log:
        start = time.perf_counter()
        status = subprocess.run(cmd, cwd=project, env=run_env(project, cpu_class), stdout=log,
                                stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - start
    rss = float("nan")
    if timed and (project / "time.txt").exists():
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)",
                          (project / "time.txt").read_text())
        rss = int(found.group(1)) / 1024 if found else rss
    return status, wall, rss


def heldout_rows(project: Path) -> dict[str, float]:
    """PSNR-Y of bicubic and the gains of SRResNet and SRGAN over it on the held-out set."""
    versions = sorted((project / "data/08_reporting/evaluation_summary.json").glob(
        "*/evaluation_summary.json"))
    if not versions:
        raise FileNotFoundError(f"{project}/data/08_reporting/evaluation_summary.json: no "
                                "version written (did the evaluation run? see kedro.log)")
    summary = json.loads(versions[-1].read_text())
    if HELDOUT not in summary:
        raise KeyError(f"{versions[-1]}: no set {HELDOUT!r} (sets: {', '.join(summary)})")
    rows = summary[HELDOUT]
    bicubic = rows["bicubic"]["psnr_y"]
    return {"bicubic_psnr_y": bicubic,
            "srresnet_vs_bicubic_db": rows["srresnet"]["psnr_y"] - bicubic,
            "srgan_vs_bicubic_db": rows["srgan"]["psnr_y"] - bicubic}


def training_facts(project: Path) -> dict[str, str]:
    """Precision and phase-1 steps from the run's MLflow tags; the steps from the kedro log
    where the tag is missing."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    tags: dict[str, str] = {}
    experiments = [e.experiment_id for e in client.search_experiments()]
    for run in reversed(client.search_runs(experiments, order_by=["attributes.start_time"])):
        tags = {**run.data.tags, **tags}  # the newest run's value wins
    facts = {
        "pretrain_steps": tags.get("pretrain.final_step", ""),
        "pretrain_stopped_because": tags.get("pretrain.stopped_because", ""),
        "pretrain_precision": _precision(tags.get("pretrain.amp_bf16")),
        "pretrain_precision_reason": tags.get("pretrain.amp_bf16_reason", ""),
        "adversarial_precision": _precision(tags.get("adversarial.amp_bf16")),
    }
    if not facts["pretrain_steps"]:
        stops = STOP_LINE.findall((project / "kedro.log").read_text())
        if stops:
            facts["pretrain_steps"], facts["pretrain_stopped_because"] = stops[-1]
    return facts


def _precision(amp_bf16: str | None) -> str:
    return {"True": "bf16", "False": "fp32"}.get(amp_bf16 or "", "?")


def one_run(project: Path, cpu_class: str, seed: int, whole: bool, params: str) -> dict:
    seed_params = [] if seed == 0 else [f"train_gan.pretrain.seed={seed}",
                                        f"train_gan.adversarial.seed={seed}"]
    joined = ",".join([p for p in params.split(",") if p] + seed_params)
    kedro_args = ([] if whole else ["--pipelines=train_gan,evaluation"]) + (
        [f"--params={joined}"] if joined else [])
    status, wall, rss = run_kedro(project, cpu_class, kedro_args)
    row = {"cpu_class": cpu_class, "seed": seed, "run": "whole" if whole else "train+eval",
           "wall_s": round(wall, 1), "peak_rss_mb": round(rss), "eval_set": HELDOUT,
           "params": joined, "status": "ok" if status == 0 else f"failed (exit {status})"}
    if status != 0:
        tail = (project / "kedro.log").read_text().splitlines()[-15:]
        print("\n".join(["  " + line for line in tail]), flush=True)
        return row
    return {**row, **training_facts(project), **heldout_rows(project)}


def show(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['cpu_class']:<17} seed {row['seed']}  {row['run']:<10} {row['status']}"
    ok = "yes" if row["srresnet_vs_bicubic_db"] >= TARGET_DB else "NO"
    return (f"{row['cpu_class']:<17} {row['seed']:>4}  {row['run']:<10} {row['wall_s']:>8.1f}  "
            f"{row['pretrain_steps']:>7}  {row['pretrain_precision']}/"
            f"{row['adversarial_precision']}    {row['srresnet_vs_bicubic_db']:+7.2f}  "
            f"{row['srgan_vs_bicubic_db']:+7.2f}  {ok}")


HEADER = (f"{'class':<17} {'seed':>4}  {'run':<10} {'wall s':>8}  {'p1 step':>7}  p1/p2 prec  "
          f"SRResNet    SRGAN  >= +{TARGET_DB} dB\n{'':<46}(dB vs bicubic, {HELDOUT})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--classes", nargs="+", choices=list(CLASSES), default=list(CLASSES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0],
                    help="the first runs the whole quickstart, the others train+eval on its data")
    ap.add_argument("--params", default="", help='extra kedro --params, "k=v,k2=v2"')
    ap.add_argument("--project", help="run this project tree as it is (default: a fresh clone "
                                      "of this checkout's HEAD)")
    ap.add_argument("--csv", type=Path, default=CSV, help=f"rows appended here (default {CSV})")
    ap.add_argument("--workdir", type=Path, help="where run folders go (default: a new temp dir)")
    args = ap.parse_args()
    if len(set(args.seeds)) != len(args.seeds):
        sys.exit(f"--seeds {args.seeds}: each seed once")

    given = given_project(args.project) if args.project else None  # refused before any work
    work = args.workdir or Path(tempfile.mkdtemp(prefix="quickstart-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    source, commit = given or clone_head(work / "source")
    common = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "cpu_model": cpu_model(), "commit": commit}
    print(f"{common['cpu_model']}, {os.cpu_count()} CPUs; code {source} ({commit}); run "
          f"folders under {work}; rows to {args.csv}\n{HEADER}", flush=True)
    rows = []
    for cpu_class in args.classes:
        first = None
        for seed in args.seeds:
            project = work / f"{cpu_class}-seed{seed}"
            copy_project(source, project)
            if first is not None:
                copy_data_prep_output(first, project)
            row = {**common, **one_run(project, cpu_class, seed, first is None, args.params)}
            append_row(args.csv, FIELDS, row)
            rows.append(row)
            print(show(row), flush=True)
            if first is None:
                if row["status"] != "ok":
                    break  # no data_prep output for the class's other seeds
                first = project
    print(f"\n{HEADER}")
    for row in rows:
        print(show(row))
    print(f"\nrun folders (logs, data, mlflow.db) kept under {work}: delete when done")


if __name__ == "__main__":
    main()
