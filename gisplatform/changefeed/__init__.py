"""The change feed: the versions opened or closed since a cursor, for other systems that
mirror a layer ("what changed since I last asked") — pulled with
`GET /api/changes?layer=…&since=<cursor>&limit=N`, or pushed to webhook subscribers.

- feed.py: cursors, reading a page (commit-safe order, every change exactly once), the
  head, retention (`prune`); why the cursor is a transaction id;
- routes.py: `GET /api/changes`;
- webhooks.py: subscriptions, signatures, `WebhookDeliverer` (the app's delivery task);
- cli.py: `gisplatform changes …` (subscribe, list, unsubscribe, prune).
"""

from .cli import changes_app
from .feed import FeedLayer
from .routes import changes_router
from .webhooks import WebhookDeliverer

__all__ = ["FeedLayer", "WebhookDeliverer", "changes_app", "changes_router"]
