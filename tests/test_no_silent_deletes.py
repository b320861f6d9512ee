"""Every place in the project's code that deletes or replaces a file, each with why it may.

No code path of the examples or the lab deletes or overwrites a file that it did not
create in the same run, unless a flag says so. This test walks every deleting call
(``unlink``, ``rmtree``, ``rmdir``, ``os.remove``, ``os.replace``) in ``examples/``,
``benchmarks/`` and ``routing_env/``: each must be one of the places below, whose reason
says why it is safe, so a new one fails here until it is looked at.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALL = re.compile(r"\.unlink\(|rmtree\(|\.rmdir\(|os\.remove\(|os\.replace\(")

#: (file, the text of the line) -> why it is safe
ALLOWED = {
    ("examples/paper/paper_runs.py", "shutil.rmtree(run_dir)"): "only with --overwrite, which says so",
    ("examples/paper/fashion_mtl_campaign.py", "shutil.rmtree(parked)"): (
        "the export's own copy of a run cut short, once the run is complete and copied whole"
    ),
    ("examples/paper/fashion_mtl_campaign.py", "stale.unlink()"): (
        "a file the export wrote (EXPORTED_FILES) that the run no longer has; other files stay"
    ),
    ("examples/rllib_routers.py", "logdir.rmdir()"): "the empty folder Ray made in this run",
    ("examples/docs/check_site.py", "shutil.rmtree(profile, ignore_errors=True)"): (
        "the browser profile it made in a temp folder for this check"
    ),
    ("routing_env/experiments/metrics.py", "os.replace(tmp, self.path)"): (
        "keep_epochs: the run's own rows after its checkpoint, redone on resume"
    ),
    ("routing_env/experiments/metrics.py", "os.replace(tmp, path)"): (
        "drop_a_cut_last_row: a row cut by a kill, redone by whoever appends next (and said)"
    ),
    ("routing_env/experiments/runs.py", "(self.path / LOCK_FILE).unlink()"): (
        "a new run that failed before writing anything: its own lock file and empty folder"
    ),
    ("routing_env/experiments/runs.py", "self.path.rmdir()"): "the same empty folder",
    ("routing_env/experiments/runs.py", "p.unlink(missing_ok=True)"): (
        "temp files of a process killed mid-write, removed under the folder's lock"
    ),
    ("routing_env/experiments/_files.py", "os.replace(tmp, path)"): "an atomic write of the caller's own file",
    ("routing_env/experiments/_files.py", "Path(tmp).unlink(missing_ok=True)"): "its own temp file, on failure",
    ("routing_env/experiments/checkpoints.py", "os.replace(tmp, path)"): (
        "the run's next checkpoint replaces its previous one, atomically"
    ),
    ("routing_env/experiments/checkpoints.py", "Path(tmp).unlink(missing_ok=True)"): "its own temp file, on failure",
}


def deleting_calls() -> set[tuple[str, str]]:
    found = set()
    for folder in ("examples", "benchmarks", "routing_env"):
        for path in (ROOT / folder).rglob("*.py"):
            for line in path.read_text(encoding="utf-8").splitlines():
                code = line.split("#", 1)[0].strip()
                if CALL.search(code):
                    text = code.removeprefix("stale.unlink() if stale.is_file() else ")
                    found.add((str(path.relative_to(ROOT)), text))
    return found


def test_every_place_that_deletes_or_replaces_a_file_is_known():
    unknown = sorted(deleting_calls() - set(ALLOWED))
    assert unknown == [], f"new places that delete or replace files; say in ALLOWED why each is safe: {unknown}"


def test_every_known_place_is_still_there():
    gone = sorted(set(ALLOWED) - deleting_calls())
    assert gone == [], f"places in ALLOWED no longer in the code; remove them: {gone}"
