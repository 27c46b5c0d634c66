/** Deterministic records for the crash test, shared by the child writer and the verifying test. */
export const CRASH_VALUE_BYTES = 800;

export function crashKey(id: number): string {
  return `session-${id % 37}`;
}

export function crashValue(id: number): Uint8Array {
  const v = new Uint8Array(CRASH_VALUE_BYTES);
  for (let i = 0; i < v.length; i++) v[i] = (id * 31 + i * 7) & 0xff;
  return v;
}
