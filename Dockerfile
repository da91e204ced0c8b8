# Multi-stage build: install and build with dev tools, run with production dependencies only,
# as the unprivileged `node` user. The same image can run the trainer for the kubernetes and
# runpod launchers (KUBERNETES_IMAGE / RUNPOD_IMAGE): their default command is
# `node --import tsx trainer/main.ts` in /app.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000 DATA_DIR=/app/data
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY tsconfig.json vite.config.ts ./
COPY db ./db
COPY contract ./contract
COPY server ./server
COPY client ./client
COPY trainer ./trainer
COPY --from=build /app/dist ./dist
RUN mkdir -p /app/data && chown -R node:node /app/data /app/dist
USER node
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "--import", "tsx", "server/main.ts"]
