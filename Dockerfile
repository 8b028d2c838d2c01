# Multi-stage build of the single edged binary.
#
#   docker build -t edged .
#   docker run -d --name edged -p 127.0.0.1:8080:8080 -v edged-data:/var/lib/edged edged
#
# Stage 1 cross-builds with `deno task compile` (which downloads Deno's
# runtime, denort, from Deno's host: the build machine needs that access).
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY . .
ARG TARGET=x86_64-unknown-linux-gnu
RUN npx --yes deno@2.9.5 task compile --target "${TARGET}" \
 && cp "dist/edged-${TARGET}" /edged

# Stage 2: a small runtime image, non-root, data directory as a volume.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/edged --shell /usr/sbin/nologin edged \
 && install -d -o edged -g edged -m 0700 /var/lib/edged
COPY --from=build /edged /usr/local/bin/edged
USER edged
# Inside a container the API must listen on all interfaces to be published;
# publish it on the host's loopback (as above) unless you mean otherwise.
# The bearer token still guards /api/v1/.
ENV EDGED_DATA_DIR=/var/lib/edged \
    EDGED_LISTEN=0.0.0.0:8080
VOLUME ["/var/lib/edged"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/edged"]
CMD ["run"]
