# linkpy's image: the router and its built-in plugins, run as a non-root user.
#
#   docker build -t linkpy:0.1.0 .
#   docker run --rm -p 4140:4140 -p 9990:9990 -v $PWD/configs:/etc/linkpy linkpy:0.1.0 run /etc/linkpy/quickstart.yaml
#
# The manifests in configs/k8s and configs/marathon name this image.

# --- build: wheels of linkpy and its dependencies ----------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY linkpy ./linkpy
COPY plugins ./plugins
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- run: a slim Python with the wheels installed, nothing else ----------------------
FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels linkpy \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home linkpy
COPY configs /etc/linkpy
USER 10001
# 4140 outgoing, 4141 incoming, 9990 admin (the per-host daemon's ports)
EXPOSE 4140 4141 9990
ENTRYPOINT ["linkpy"]
CMD ["run", "/etc/linkpy/quickstart.yaml"]
