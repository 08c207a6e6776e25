"""Objects made by another interpreter under another PYTHONHASHSEED: what a value that keeps its
hash (kink.wire.Transform, kink.engine.events.SaTransform) must survive when it is unpickled
here, since a str hashes differently under another seed."""

import os
import pickle
import subprocess
import sys


def unpickled_from_another_seed(script: str) -> object:
    """Run `script` (which writes a pickle to stdout) under another hash seed than ours; what it
    pickled, unpickled here."""
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    env = {**os.environ, "PYTHONHASHSEED": seed}
    made = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env, check=True)
    return pickle.loads(made.stdout)
