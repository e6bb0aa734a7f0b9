# syntax=docker/dockerfile:1
# One image recipe for the three services; SERVICE (listener, processor or queryapi) picks one.
# Build from the repository root: docker build --build-arg SERVICE=processor .
ARG SERVICE=processor

FROM golang:1.26-bookworm AS build
ARG SERVICE
WORKDIR /src
# Module files first so the dependency download is cached across source changes.
COPY go.work ./
COPY e2e/go.mod e2e/go.sum* e2e/
COPY listener/go.mod listener/go.sum* listener/
COPY migrations/go.mod migrations/go.sum* migrations/
COPY pkg/go.mod pkg/go.sum* pkg/
COPY processor/go.mod processor/go.sum* processor/
COPY queryapi/go.mod queryapi/go.sum* queryapi/
COPY testkit/go.mod testkit/go.sum* testkit/
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/${SERVICE} ./${SERVICE}

# Static binary on a distroless base: no shell, runs as the nonroot user (65532). The binary
# keeps its service's name (/listener, /processor, /queryapi: the compose health checks run it);
# an exec-form ENTRYPOINT cannot expand SERVICE, so each service's last lines are a stage of
# their own and SERVICE selects one.
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
USER nonroot:nonroot

FROM runtime AS listener
COPY --from=build /out/listener /listener
EXPOSE 8080
ENTRYPOINT ["/listener"]

FROM runtime AS processor
COPY --from=build /out/processor /processor
EXPOSE 8082
ENTRYPOINT ["/processor"]

FROM runtime AS queryapi
COPY --from=build /out/queryapi /queryapi
EXPOSE 8081
ENTRYPOINT ["/queryapi"]

FROM ${SERVICE}
