// The build identity the shims carry in their marker (native/shim.c, scripts/build.sh).
// Its own module, free of node:sea (version.ts), because cmd/main.ts evaluates it while
// the start-up snapshot is built.

// Replaced by scripts/esbuild.ts at build time; absent when run from source.
declare const __STRAND_VERSION__: string | undefined;
declare const __STRAND_COMMIT__: string | undefined;

/** "<version>-<commit>" of this executable; undefined when running from source. */
export function buildId(): string | undefined {
  if (typeof __STRAND_VERSION__ !== 'string' || typeof __STRAND_COMMIT__ !== 'string') return undefined;
  return `${__STRAND_VERSION__}-${__STRAND_COMMIT__}`;
}
