import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { crc64Avro } from './crc64';
import { parsingCanonicalForm } from './schemas';

// Vectors from Apache Avro's share/test/data/schema-tests.txt (signed 64-bit, as published).
const VECTORS: readonly [string, bigint][] = [
  ['"null"', 7195948357588979594n],
  ['"boolean"', -6970731678124411036n],
  ['"int"', 8247732601305521295n],
  ['"long"', -3434872931120570953n],
  ['"float"', 5583340709985441680n],
  ['"string"', -8142146995180207161n],
  ['{"name":"foo","type":"fixed","size":15}', 1756455273707447556n],
  ['{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}', 7843277075252814651n],
  ['{"name":"foo","type":"record","fields":[]}', -4824392279771201922n],
  ['["int","boolean"]', 5392556393470105090n],
  ['{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}', -1759257747318642341n],
];

describe('CRC-64-AVRO', () => {
  it.each(VECTORS)('fingerprints %s as the Avro test suite does', (canonical, expected) => {
    expect(BigInt.asIntN(64, crc64Avro(Buffer.from(canonical)))).toBe(expected);
  });
});

describe('Parsing Canonical Form', () => {
  it.each([
    ['{"type":"fixed","name":"foo","size":15,"doc":"x"}', '{"name":"foo","type":"fixed","size":15}'],
    [
      '{"type":"record","name":"foo","namespace":"x.y","doc":"d","fields":[{"name":"f1","type":{"type":"long","logicalType":"timestamp-micros"},"default":0,"doc":"d"}]}',
      '{"name":"x.y.foo","type":"record","fields":[{"name":"f1","type":"long"}]}',
    ],
    ['{"type":"enum","name":"e","symbols":["A","B"],"default":"A"}', '{"name":"e","type":"enum","symbols":["A","B"]}'],
    ['{"type":"array","items":{"type":"string","logicalType":"uuid"}}', '{"type":"array","items":"string"}'],
  ])('normalises %s', (input, canonical) => {
    expect(parsingCanonicalForm(avro.Type.forSchema(JSON.parse(input) as never))).toBe(canonical);
  });
});
