# The chorus binary (every role is a subcommand). Used by compose/.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin chorus

FROM debian:bookworm-slim
RUN useradd --system chorus
COPY --from=build /src/target/release/chorus /usr/local/bin/chorus
USER chorus
ENTRYPOINT ["chorus"]
