"""The console's pages, one ``APIRouter`` module per area; :func:`ops.console.routes.mount_console` includes them."""
