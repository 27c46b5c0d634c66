/**
 * CRC-64-AVRO, the Rabin fingerprint the Avro specification defines for schema fingerprints
 * ("Schema Fingerprints"). Computed once per schema at load time, so BigInt is fast enough.
 */

const EMPTY = 0xc15d213aa4d7a795n;
const MASK64 = 0xffffffffffffffffn;

const TABLE: readonly bigint[] = (() => {
  const table: bigint[] = [];
  for (let i = 0; i < 256; i++) {
    let fp = BigInt(i);
    for (let j = 0; j < 8; j++) {
      fp = (fp >> 1n) ^ (EMPTY & -(fp & 1n));
    }
    table.push(fp & MASK64);
  }
  return table;
})();

/** The fingerprint as an unsigned 64-bit integer. */
export function crc64Avro(bytes: Uint8Array): bigint {
  let fp = EMPTY;
  for (const b of bytes) {
    // The index is always 0..255, so the table lookup is defined.
    fp = (fp >> 8n) ^ (TABLE[Number((fp ^ BigInt(b)) & 0xffn)] as bigint);
  }
  return fp;
}

/** The fingerprint as the 8 little-endian bytes the single-object encoding header carries. */
export function crc64AvroBytes(text: string): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(crc64Avro(Buffer.from(text, 'utf8')));
  return out;
}
