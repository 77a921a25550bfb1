"""Ask the X window called sys.argv[1] to close, as a window manager's close button does
(a WM_DELETE_WINDOW client message)."""
import sys

from Xlib import X, display, protocol

d = display.Display()


def find(w):
    if w.get_wm_name() == sys.argv[1]:
        return w
    for child in w.query_tree().children:
        found = find(child)
        if found:
            return found
    return None


w = find(d.screen().root)
if w is None:
    sys.exit(f"no window called {sys.argv[1]!r}")
protocols, delete = d.intern_atom("WM_PROTOCOLS"), d.intern_atom("WM_DELETE_WINDOW")
w.send_event(protocol.event.ClientMessage(window=w, client_type=protocols, data=(32, [delete, X.CurrentTime, 0, 0, 0])))
d.flush()
