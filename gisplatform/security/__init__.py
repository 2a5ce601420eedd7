"""The security kernel: the one choke point every read and write path asks.

- who: `Principal` (from a bearer token via `principal_for_token`, or `ANONYMOUS`), carried
  per request in the `current_principal` context variable;
- what: `access(principal, layer, sharing)` -> `Access(read, unmask, write)`, and
  `require(principal, layer, sharing, need)`, which raises AuthError (401) / AccessDenied (403);
- how personal fields look: `mask_row(row, personal, access)` / `mask_value(kind, value)`;
- what a request may ask about them: `check_inputs(names, personal, access, layer)` refuses
  (MaskedFieldInput, 400) a field the caller receives masked as a filter, sort key or
  expression; `masked_fields` lists them (hidden from the queryables too);
- ids from personal values: `pseudonym(key, value)` with the database's key
  (`read_pseudonym_key`), a keyed hash a masked value cannot be matched against;
- the record: `audit(conn, principal, layer, action, detail, client)` for every unmasked read,
  write and export.

It never imports `layers`: callers pass the layer name, its sharing class and its personal
attributes ({name: mask kind}). Tables: migration 0003 (city.departments, api_tokens, grants,
audit_log) and the `gisplatform_analyst` database role.
"""

from .analyst import ANALYST_ROLE, create_analyst_user
from .audit import EXPORT_ACTION, READ_PERSONAL_ACTION, WRITE_ACTION, audit
from .masking import (
    MASK_KINDS,
    MASK_SQL,
    SMALL_COUNT,
    check_mask_kind,
    mask_date,
    mask_name,
    mask_phone,
    mask_resident_id,
    mask_sql,
    mask_value,
)
from .principals import (
    ANONYMOUS,
    CONDITIONAL,
    LEVELS,
    NO_ACCESS,
    NOT_SHARED,
    PUBLISH,
    PUBLISH_TARGET,
    READ,
    READ_PERSONAL,
    SHARING_CLASSES,
    UNCONDITIONAL,
    WORKFLOW_ROLES,
    WORKFLOW_TARGET,
    WRITE,
    Access,
    AccessDenied,
    AuthError,
    MaskedFieldInput,
    Principal,
    access,
    check_inputs,
    current_principal,
    mask_row,
    masked_fields,
    personal_masks,
    require,
    require_publish,
    require_role,
)
from .pseudonyms import PseudonymKeyMissing, pseudonym, read_pseudonym_key
from .tokens import (
    create_token,
    hash_secret,
    list_departments,
    list_tokens,
    parse_grant,
    presented_secret,
    principal_for_token,
    principal_for_token_async,
    revoke_token,
)

__all__ = [
    "ANALYST_ROLE", "ANONYMOUS", "Access", "AccessDenied", "AuthError", "CONDITIONAL",
    "EXPORT_ACTION", "LEVELS", "MASK_KINDS", "MASK_SQL", "MaskedFieldInput", "NOT_SHARED", "NO_ACCESS", "PUBLISH", "PUBLISH_TARGET", "Principal", "READ",
    "READ_PERSONAL", "READ_PERSONAL_ACTION", "SHARING_CLASSES", "UNCONDITIONAL", "WORKFLOW_ROLES",
    "WORKFLOW_TARGET", "WRITE",
    "WRITE_ACTION", "access", "audit", "check_inputs", "check_mask_kind", "create_analyst_user", "create_token",
    "current_principal", "hash_secret", "list_departments", "list_tokens", "mask_date",
    "mask_name", "mask_phone", "mask_resident_id", "mask_row", "mask_sql", "mask_value",
    "masked_fields", "parse_grant", "presented_secret", "PseudonymKeyMissing", "pseudonym", "read_pseudonym_key",
    "require", "require_publish", "require_role", "SMALL_COUNT",
    "personal_masks", "principal_for_token", "principal_for_token_async", "revoke_token",
]
