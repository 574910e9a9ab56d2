"""The one Klein router of the Host App.

Route groups live in their own modules as mixins of HostAPI, all registering
on this router, so one Site serves them and the shared error handlers apply
to every route.
"""

from klein import Klein

router = Klein()
