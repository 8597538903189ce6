# The strand node image: the single executable, run by the DaemonSet
# (manifests/strand.yaml) as `/strand install ...` (init container) and then
# `/strand agent ...`; both set their command and args, so CMD below is only the
# default of a bare `docker run`.
#
#   docker build --build-arg STRAND_COMMIT=$(git rev-parse --short HEAD) \
#     -t strand:$(node -p 'require("./package.json").version') .
#
# Built from source: the first stage is a fresh Debian 12 that does what
# scripts/setup.sh does on a fresh machine (Node and npm from Debian only to run
# `npm ci`, which brings the pinned Node that builds everything) and then
# scripts/build.sh. scripts/image.sh writes the same final image (same /strand,
# /strand-lib, entrypoint and command) as a tarball without Docker, from dist/.
#
# dist/strand is the pinned Node linked against glibc, libstdc++, libgcc_s and
# libatomic; distroless/cc-debian12 has the first three, and libatomic.so.1 comes
# with the executable in /strand-lib (its RUNPATH is $ORIGIN/strand-lib; `strand
# install` copies it to the node beside the plugins).
FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates nodejs npm python3 make g++ binutils patchelf libatomic1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY . .
ARG STRAND_COMMIT=unknown
RUN STRAND_COMMIT=$STRAND_COMMIT bash scripts/build.sh \
 && ldd dist/strand | grep -q 'libatomic.so.1 => /src/dist/strand-lib/'

FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/dist/strand /strand
COPY --from=build /src/dist/strand-lib /strand-lib
ENTRYPOINT ["/strand"]
CMD ["install", "--sleep"]
