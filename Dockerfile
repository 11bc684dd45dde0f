# livesight image: the daemon (`livesight serve`) and the gateway (`livesight gateway`) — see docs/fleet.md.
#
#   docker build -t livesight:cpu .                                   # CPU (the tiny model, tests, the gateway)
#   docker build -t livesight:cuda --build-arg TORCH_VARIANT=cu126 .  # NVIDIA GPUs (the CUDA runtime is in the wheel)
#
# Installed the Makefile's way: the pinned torch first, from PyTorch's index for the variant, then the project
# (which then finds its torch requirement already met and never pulls another build).
FROM python:3.11-slim-bookworm

ARG TORCH=torch==2.13.0
ARG TORCH_VARIANT=cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    HOME=/tmp

RUN python -m pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" "${TORCH}"

WORKDIR /opt/livesight
COPY pyproject.toml README.md ./
COPY livesight ./livesight
COPY configs ./configs
RUN python -m pip install . \
    && python -c "import livesight.cli, torch; print('torch', torch.__version__)"

RUN useradd --system --uid 10001 --home-dir /tmp livesight
USER 10001
EXPOSE 8765
ENTRYPOINT ["livesight"]
CMD ["serve", "--config", "/etc/livesight/config.yaml"]
