"""THE one API over mailbox state: every protocol and the webmail read and change mail only here.

Functions here are synchronous (they use the ORM). Event-loop code calls them
through `mailcore.store.aio.run`, the single async boundary.
"""
from mailcore.store.events import MailboxEvent, Subscription, hub
from mailcore.store.folders import (
    DELIMITER,
    INBOX,
    create_folder,
    delete_folder,
    folder_by_special_use,
    folder_info,
    get_folder,
    list_folders,
    normalize_name,
    rename_folder,
    set_subscribed,
)
from mailcore.store.locks import acquire_lock, release_lock, renew_lock
from mailcore.store.messages import (
    FLAG_ADD,
    FLAG_REMOVE,
    FLAG_REPLACE,
    append,
    collect_orphan_blobs,
    contains,
    copy,
    deliver,
    expunge,
    expunged_since,
    fetch,
    fetch_by_sequence,
    move,
    quota,
    read_blob,
    read_message,
    store_flags,
    uids,
)
from mailcore.store.types import (
    Appended,
    DeliveryReport,
    FlagChange,
    FlagResult,
    FolderExists,
    FolderInfo,
    FolderNotAllowed,
    FolderRef,
    InvalidFolderName,
    MessageInfo,
    NoSuchFolder,
    OverQuota,
    StorageFailure,
    StoreError,
)

__all__ = [
    "DELIMITER", "FLAG_ADD", "FLAG_REMOVE", "FLAG_REPLACE", "INBOX",
    "Appended", "DeliveryReport", "FlagChange", "FlagResult", "FolderExists", "FolderInfo",
    "FolderNotAllowed", "FolderRef", "InvalidFolderName", "MailboxEvent", "MessageInfo",
    "NoSuchFolder", "OverQuota", "StorageFailure", "StoreError", "Subscription",
    "acquire_lock", "append", "collect_orphan_blobs", "contains", "copy", "create_folder", "delete_folder",
    "deliver",
    "expunge", "expunged_since", "fetch", "fetch_by_sequence", "folder_by_special_use",
    "folder_info", "get_folder", "hub", "list_folders", "move", "normalize_name", "quota",
    "read_blob", "read_message", "release_lock", "rename_folder", "renew_lock", "set_subscribed", "store_flags", "uids",
]
