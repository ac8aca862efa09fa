# syntax=docker/dockerfile:1
# One image, two programs, shipped as plain JavaScript compiled from the TypeScript sources by
# `npm run build`: the grid controllers (the default command) and application-grid-wrapper
# (`command: [node, wrapper/main.js]`). Development runs the `.ts` files directly; the image does
# not, as stripping types at start costs every process memory and time.
# test/image.test.ts performs these steps without a container engine and starts both programs from
# the result; it understands FROM, WORKDIR, ENV, COPY (also --from), RUN, USER, ENTRYPOINT and CMD.

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Install scripts off: the pinned `node` devDependency would fetch a second Node; the base image has one.
RUN npm ci --ignore-scripts
COPY . .
# Compiles the two entry points and everything they import (tsconfig.build.json) into dist/.
RUN npm run build

# Production dependencies only, in a stage of their own so that npm's cache stays out of the image.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./
USER 65532:65532
ENTRYPOINT []
# The controller's Node flags, as its Deployment sets them (examples/install/controller.yaml says why).
CMD ["node", "--max-semi-space-size=1", "--optimize-for-size", "--max-opt=1", "--max-old-space-size=384", "--expose-gc", "controllers/main.js"]
