# UNTESTED BY BUILD: there is no Docker engine where this was written. The steps
# mirror `make build` and `npm start`; report anything that fails.
#
# Builds the image k8s/deployment.yaml runs: docker build -t herald:0.1.0 .
# Debian bookworm (glibc 2.36), not Alpine: the uWebSockets.js native binary needs
# glibc, and Herald refuses to start without it (exit 3).

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY client/package.json ./client/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY client/tsconfig.json ./client/
COPY client/src ./client/src
COPY src ./src
# The SDK first: the gateway imports the protocol's grammar and codes from it.
RUN node_modules/.bin/tsc -p client/tsconfig.json && node_modules/.bin/tsc -p tsconfig.json && cp src/library.lua src/presence.lua dist/

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY client/package.json ./client/
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/client/dist ./client/dist
# Numeric, matching runAsUser in k8s/deployment.yaml; files stay root-owned and
# read-only to it.
USER 10001
EXPOSE 8080
CMD ["node", "dist/main.js"]
