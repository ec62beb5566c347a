#!/usr/bin/env python3
"""Runs a check script inside a venv under the build dir, creating it on first use.

  venv_run.py VENV_DIR SCRIPT [ARGS...]

The venv gets deploy/requirements.txt from PyPI (the only network use; the checks
themselves run offline: kubernetes-validate bundles the Kubernetes schemas). Concurrent
ctest jobs share one venv: creation is serialized with a lock file and marked complete by a
stamp holding the requirements, so an interrupted install is redone.
Needs Debian's python3-venv (ensurepip).
"""
import fcntl
import os
import subprocess
import sys
import venv

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS = os.path.join(HERE, "..", "..", "deploy", "requirements.txt")


def ensure(venv_dir):
    with open(REQUIREMENTS, encoding="utf-8") as f:
        wanted = f.read()
    os.makedirs(os.path.dirname(os.path.abspath(venv_dir)), exist_ok=True)
    stamp = os.path.join(venv_dir, "kiln-requirements.txt")
    with open(venv_dir.rstrip("/") + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(stamp) and open(stamp, encoding="utf-8").read() == wanted:
            return
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
        except Exception as e:  # ensurepip missing: say which package provides it
            sys.exit(f"venv_run: cannot create a venv ({e}); install Debian's python3-venv")
        pip = [os.path.join(venv_dir, "bin", "python"), "-m", "pip", "--disable-pip-version-check"]
        subprocess.run(pip + ["install", "-q", "-r", REQUIREMENTS], check=True)
        with open(stamp, "w", encoding="utf-8") as f:
            f.write(wanted)


def main():
    venv_dir, script, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    ensure(venv_dir)
    python = os.path.join(venv_dir, "bin", "python")
    os.execv(python, [python, script] + args)


if __name__ == "__main__":
    main()
