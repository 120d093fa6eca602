#!/usr/bin/env bash
# A fresh, non-editable base install beside a user's own envs/ and agents/ packages:
# builds the wheel, installs it (no extras) into a new venv, runs an env and its oracle from a folder
# that shadows the generic names, checks that a missing extra is named, and reports the venv's size.
#   bash benchmarks/fresh_install.sh [WORKDIR]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
python3 -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$repo"
wheel="$(ls "$work"/dist/edgegen_gym-*.whl)"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet "$wheel"
user="$work/user_project"
mkdir -p "$user/envs" "$user/agents"
echo 'raise RuntimeError("the user envs package was imported")' > "$user/envs/__init__.py"
echo 'raise RuntimeError("the user agents package was imported")' > "$user/agents/__init__.py"
cd "$user"
"$work/venv/bin/python" - <<'PY'
import gymnasium as gym

import edgegen

env = gym.make("edgegen/SFLAM-v0")
env.reset(seed=0)
result = env.unwrapped.oracle()
print(f"SFLAM-v0 oracle: status {result.status}, objective {result.objective:.4f}, gap {result.gap:.2e}")
fresh = gym.make("edgegen:edgegen/MEG-v0")
print("module-prefixed id:", fresh.spec.id)
try:
    import edgegen.agents  # noqa: F401
except ImportError as err:
    print("without the agents extra:", err)
import sys

print("torch imported:", "torch" in sys.modules, "| user packages imported:", "envs" in sys.modules)
PY
"$work/venv/bin/python" -m pip list --format=freeze | wc -l | xargs echo "packages in the venv:"
du -sh "$work/venv" | cut -f1 | xargs echo "venv size:"
