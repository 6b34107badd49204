# PageLens API and UI image (CPU torch; the VLM runs in its own vLLM container on the GPU). Ray GPU workers build
# it with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 (docker-compose.yml, profile ray-gpu).
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY store store
COPY ingest ingest
COPY retrieval retrieval
COPY vlm vlm
COPY app app
RUN pip install torch==2.14.1 torchvision==0.29.1 --index-url "$TORCH_INDEX" \
    && pip install '.[postgres,server,ui,vlm,ray]'
EXPOSE 8000 8501 6379 10001 8265
CMD ["pagelens", "serve", "--host", "0.0.0.0", "--port", "8000"]
