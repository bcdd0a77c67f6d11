// Keeps the page's files once loaded, so it samples offline afterwards.
const CACHE = 'diffuse-web-v2';
const FILES = ['./', 'index.html', 'page.js', 'diffuse.mjs', 'model.json', 'weights.bin', 'tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'];
self.addEventListener('install', (e) => e.waitUntil(caches.open(CACHE).then((c) => c.addAll(FILES)).catch(() => {})));
self.addEventListener('fetch', (e) => e.respondWith(caches.match(e.request).then((hit) => hit || fetch(e.request))));
