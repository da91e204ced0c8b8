// SPA: builds the client with vite (the repo's vite.config.ts) into bench/out/spa, so the
// shared dist/ is left alone, and measures what a first visit downloads: the entry script and
// its modulepreloads from index.html, gzipped. Lazy chunks and CSS are reported separately.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'vite';

export interface SpaFile {
  file: string;
  bytes: number;
  gzipBytes: number;
}

export interface SpaResult {
  initialJsGzipBytes: number;
  initialJsBytes: number;
  initial: SpaFile[];
  lazyJsGzipBytes: number;
  lazy: SpaFile[];
  cssGzipBytes: number;
  buildSeconds: number;
  /** gzip level used (zlib's default, what compression middleware and most proxies use). */
  gzipLevel: number;
}

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

async function sizeOf(dir: string, file: string): Promise<SpaFile> {
  const content = await readFile(path.join(dir, file));
  return { file, bytes: content.length, gzipBytes: gzipSync(content).length };
}

export async function measureSpa(outDir: string): Promise<SpaResult> {
  const started = performance.now();
  await build({
    configFile: path.join(REPO, 'vite.config.ts'),
    root: path.join(REPO, 'client'),
    logLevel: 'warn',
    build: { outDir, emptyOutDir: true },
  });
  const buildSeconds = (performance.now() - started) / 1000;
  const html = await readFile(path.join(outDir, 'index.html'), 'utf8');
  const referenced = (pattern: RegExp) => [...html.matchAll(pattern)].map((m) => (m[1] ?? '').replace(/^\//, ''));
  const initialFiles = [
    ...referenced(/<script[^>]*type="module"[^>]*src="([^"]+)"/g),
    ...referenced(/<link[^>]*rel="modulepreload"[^>]*href="([^"]+)"/g),
  ];
  const cssFiles = referenced(/<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"/g);
  const assets = (await readdir(path.join(outDir, 'assets'))).map((f) => `assets/${f}`);
  const lazyFiles = assets.filter((f) => f.endsWith('.js') && !initialFiles.includes(f));
  const initial = await Promise.all(initialFiles.map((f) => sizeOf(outDir, f)));
  const lazy = await Promise.all(lazyFiles.map((f) => sizeOf(outDir, f)));
  const css = await Promise.all(cssFiles.map((f) => sizeOf(outDir, f)));
  const sum = (files: SpaFile[], key: 'bytes' | 'gzipBytes') => files.reduce((a, f) => a + f[key], 0);
  return {
    initialJsGzipBytes: sum(initial, 'gzipBytes'),
    initialJsBytes: sum(initial, 'bytes'),
    initial,
    lazyJsGzipBytes: sum(lazy, 'gzipBytes'),
    lazy,
    cssGzipBytes: sum(css, 'gzipBytes'),
    buildSeconds: Math.round(buildSeconds * 10) / 10,
    gzipLevel: 6,
  };
}
