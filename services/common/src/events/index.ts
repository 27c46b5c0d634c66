// The event contract: catalog, types, building, encoding, compatibility. See docs/events.md.
export { AVRO_NAMESPACE, CODE_DOMAINS, CODE_PATTERN, EVENT_CATALOG, EVENT_TYPES, isEventType, type CatalogEntry, type EventType } from './catalog';
export {
  ENVELOPE_PCI_REQUIREMENTS,
  PCI_10_2_2_FIELDS,
  PCI_10_2_2_REQUIRED_PATHS,
  PCI_REQUIREMENTS,
  PCI_REQUIREMENTS_BY_TYPE,
  missingRequiredFields,
  pciRequirementsFor,
  type PciRequirementId,
} from './pci';
export type { AnyAttestEvent, AttestEvent, Envelope, EventMetadata, EventParts, PayloadOf, UnchainedEvent, UnchainedMetadata } from './types';
export * from './types.generated';
export {
  chainEvent,
  createSystemClock,
  genesisPrevHash,
  newEvent,
  systemClock,
  uuidv7,
  type ChainPosition,
  type EventClock,
  type NewEventDeps,
  type ProducerIdentity,
} from './builder';
export {
  EventCodec,
  HEADER_BYTES,
  SINGLE_OBJECT_MARKER,
  SchemaRegistry,
  createEventCodec,
  decodeEvent,
  encodeEvent,
  getDefaultCodec,
  readHeader,
  type DecodedEvent,
  type RegistryEntry,
} from './codec';
export { assertCompatible, checkCompatibility, type CompatibilityIssue, type CompatibilityReport } from './compat';
export { EVENT_ERROR_CODES, EventError, isEventError, type EventErrorCode } from './errors';
export { compilePanScanner, containsPan, findPanCandidates } from './pan-guard';
// One realistic event per type, and the committed golden fixtures: for other modules' tests.
export { listFixtures, SAMPLE_PARTS, sampleEvent, type Fixture } from './fixtures';
export { DEFAULT_SCHEMA_ROOT, loadSchemaSet, type LoadedSchema, type SchemaSet } from './schemas';
