# One image, two programs: the grid controllers (default) and application-grid-wrapper
# (`command: [node, wrapper/main.ts]`). TypeScript runs through Node's type stripping: no build step.
# syntax=docker/dockerfile:1
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Runtime dependencies only; the pinned `node` devDependency is not needed in an image that is Node 24.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY kube ./kube
COPY controllers ./controllers
COPY wrapper ./wrapper
# Test files are not part of the programs.
RUN find kube controllers wrapper -name '*.test.ts' -delete
USER 65532:65532
ENTRYPOINT []
CMD ["node", "controllers/main.ts"]
