"""The realtime ``ps_contacts`` table and the in-memory contacts, kept in step with Asterisk.

`ContactsSync` consumes the AMI client's ContactStatus/PeerStatus events and list actions; it
never reads the AMI socket. ``schema.metadata`` is this package's MetaData for the `Store`.
"""

from .listing import ListingFailed
from .model import Contact, ContactChange, contact_id, peer_contact_id
from .sync import ContactsSync

__all__ = ["Contact", "ContactChange", "ContactsSync", "ListingFailed", "contact_id", "peer_contact_id"]
