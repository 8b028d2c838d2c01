/**
 * TUF 1.0 client (theupdateframework.github.io/specification): metadata
 * types, signature verification (Ed25519, ECDSA P-256/P-384, RSA-PSS), the
 * client workflow with a pluggable {@link Fetcher} (behind `edged tuf-client`).
 *
 * @module
 */
export { canonicalBytes, canonicalJson } from "./canonical_json.ts";
export { type TargetInfo, TufClient, type TufClientOptions } from "./client.ts";
export {
  BadVersionError,
  DownloadError,
  DownloadHttpError,
  DownloadLengthError,
  DownloadTimeoutError,
  EqualVersionError,
  ExpiredMetadataError,
  FormatError,
  LengthOrHashMismatchError,
  TargetNotFoundError,
  TrustStoreError,
  TufDownloadError,
  TufError,
  UnsignedMetadataError,
} from "./errors.ts";
export { type Fetcher, HttpFetcher, type HttpFetcherOptions } from "./fetcher.ts";
export { type Key, keyId, verifySignature } from "./keys.ts";
export {
  type DelegatedRole,
  type Delegations,
  type Metadata,
  type MetaFile,
  parseMetadata,
  type RoleKeys,
  type Root,
  type Signature,
  type Signed,
  type Snapshot,
  SPEC_VERSION,
  type TargetFile,
  type Targets,
  type Timestamp,
  verifyDelegate,
} from "./metadata.ts";
export { pathMatches, quoteName } from "./paths.ts";
export { TrustedSet } from "./trusted_set.ts";
export { createChecker, verifyLengthAndHashes } from "./verify.ts";
