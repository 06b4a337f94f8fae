"""Webmail URLs. Folder ids and UIDs in URLs are always checked against the signed-in account."""
from django.urls import path

from webmail import autoconfig
from webmail.views import auth, compose, folders, mailbox, message, preferences, search

app_name = "webmail"

urlpatterns = [
    path("", mailbox.inbox, name="inbox"),
    path("login/", auth.login_view, name="login"),
    path("logout/", auth.logout_view, name="logout"),
    path("mail/<int:folder_id>/", mailbox.folder_view, name="folder"),
    path("mail/<int:folder_id>/act/", mailbox.act, name="act"),
    path("mail/<int:folder_id>/<int:uid>/", message.message_view, name="message"),
    path("mail/<int:folder_id>/<int:uid>/body/", message.body_frame, name="body"),
    path("mail/<int:folder_id>/<int:uid>/images/", message.show_images, name="show_images"),
    path("mail/<int:folder_id>/<int:uid>/part/<str:path>/", message.attachment, name="attachment"),
    path("mail/<int:folder_id>/<int:uid>/inline/<str:path>/", message.inline_part, name="inline"),
    path("undo/", mailbox.undo, name="undo"),
    path("counts/", mailbox.unread_counts, name="counts"),
    path("search/", search.search_view, name="search"),
    path("folders/", folders.folders_view, name="folders"),
    path("folders/create/", folders.folder_create, name="folder_create"),
    path("folders/<int:folder_id>/rename/", folders.folder_rename, name="folder_rename"),
    path("folders/<int:folder_id>/delete/", folders.folder_delete, name="folder_delete"),
    path("compose/", compose.compose_view, name="compose"),
    path("outbox/<int:pending_id>/", compose.outbox_view, name="outbox"),
    path("outbox/<int:pending_id>/undo/", compose.undo_send, name="undo_send"),
    path("mail/<int:folder_id>/<int:uid>/reply/", compose.reply_view, name="reply"),
    path("mail/<int:folder_id>/<int:uid>/forward/", compose.forward_view, name="forward"),
    path("settings/", preferences.settings_view, name="settings"),
]

# Client autoconfiguration (Thunderbird, Outlook, Apple): webmail/autoconfig.py
urlpatterns += autoconfig.urlpatterns
