import { randomBytes } from 'node:crypto';

/**
 * A short prefix unique to this test run, for every namespace, link and bridge a test
 * creates. Kernel link names are limited to 15 bytes, so keep it at 6 characters:
 * `STRAND_TEST_PREFIX` (default `st`) + 4 hex digits. Link names built from it look like
 * `st3f2ab-br0`.
 */
export function runPrefix(): string {
  const base = (process.env['STRAND_TEST_PREFIX'] ?? 'st').slice(0, 3);
  return base + randomBytes(2).toString('hex');
}
