# The strand node image: the single executable, run by the DaemonSet
# (manifests/strand.yaml) as `/strand install ...` (init container) and then
# `/strand agent ...`; both set their command and args, so CMD below is only the
# default of a bare `docker run`.
#
#   bash scripts/build.sh                # dist/strand
#   docker build -t strand:dev .
#
# scripts/image.sh writes the same image (same /strand, entrypoint and command) as an
# OCI tarball without Docker; it takes the C/C++ runtime libraries from the Debian 12
# build machine instead of from the distroless base.
#
# dist/strand is the pinned Node linked against glibc, libstdc++, libgcc_s and
# libatomic. distroless/cc-debian12 has all of them but libatomic, which comes from
# Debian 12 in a throw-away stage.
FROM debian:12-slim AS libatomic
RUN apt-get update \
 && apt-get install -y --no-install-recommends libatomic1 \
 && rm -rf /var/lib/apt/lists/*

FROM gcr.io/distroless/cc-debian12
COPY --from=libatomic /usr/lib/x86_64-linux-gnu/libatomic.so.1* /usr/lib/x86_64-linux-gnu/
COPY dist/strand /strand
ENTRYPOINT ["/strand"]
CMD ["install", "--sleep"]
