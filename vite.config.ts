// Builds the SPA from client/ into dist/client; in dev, proxies the API to the server on :3000.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  root: 'client',
  plugins: [react()],
  build: { outDir: '../dist/client', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 600 },
  server: {
    proxy: { '/trpc': 'http://localhost:3000', '/health': 'http://localhost:3000', '/api': 'http://localhost:3000' },
  },
});
