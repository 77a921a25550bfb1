//! The tray: its menu is built from [`menu::tray_menu`], and its items call the same functions
//! as the window's buttons. It lives on the event loop's thread; the rest of the process
//! reaches it with a [`UiEvent`].

use parking_lot::Mutex;
use tao::event_loop::EventLoopProxy;
use tray_icon::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

use crate::menu::{self, Item, TrayIcon as Look};
use crate::model::AppModel;

/// What the event loop is asked to do.
#[derive(Debug)]
pub enum UiEvent {
    /// Show this state in the tray; `force` even if it looks shown (a check item toggles
    /// itself when clicked).
    Show { model: Box<AppModel>, force: bool },
    /// End the process.
    Exit(i32),
}

fn decode(bytes: &[u8]) -> Icon {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("tray icons are valid PNGs");
    let mut buf = vec![0; reader.output_buffer_size().expect("a small icon")];
    let info = reader
        .next_frame(&mut buf)
        .expect("tray icons are valid PNGs");
    let pixels = &buf[..info.buffer_size()];
    let rgba: Vec<u8> = match info.color_type {
        png::ColorType::Rgba => pixels.to_vec(),
        png::ColorType::Rgb => pixels
            .chunks(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        png::ColorType::GrayscaleAlpha => pixels
            .chunks(2)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        _ => pixels.iter().flat_map(|g| [*g, *g, *g, 255]).collect(),
    };
    Icon::from_rgba(rgba, info.width, info.height).expect("tray icons are valid PNGs")
}

fn icon(look: Look) -> Icon {
    decode(match look {
        Look::Stopped => include_bytes!("../../../icons/tray-stopped.png"),
        Look::Running => include_bytes!("../../../icons/tray-running.png"),
        Look::Downloading => include_bytes!("../../../icons/tray-downloading.png"),
        Look::Waiting => include_bytes!("../../../icons/tray-waiting.png"),
        Look::Error => include_bytes!("../../../icons/tray-error.png"),
    })
}

fn build_menu(items: &[Item]) -> tray_icon::menu::Result<Menu> {
    let mut built: Vec<Box<dyn IsMenuItem>> = Vec::new();
    for item in items {
        match item {
            Item::Label { id, text } => {
                built.push(Box::new(MenuItem::with_id(*id, text, false, None)))
            }
            Item::Action { id, text, enabled } => {
                built.push(Box::new(MenuItem::with_id(*id, text, *enabled, None)))
            }
            Item::Check {
                id,
                text,
                checked,
                enabled,
            } => built.push(Box::new(CheckMenuItem::with_id(
                *id, text, *enabled, *checked, None,
            ))),
            Item::Separator => built.push(Box::new(PredefinedMenuItem::separator())),
        }
    }
    let refs: Vec<&dyn IsMenuItem> = built.iter().map(|b| b.as_ref()).collect();
    Menu::with_items(&refs)
}

/// The tray icon and what it shows now.
pub struct Tray {
    icon: TrayIcon,
    shown: Option<(Vec<Item>, Look)>,
}

impl Tray {
    /// Make the tray icon (on the event loop's thread, once it runs).
    pub fn new(m: &AppModel) -> Result<Tray, String> {
        let items = menu::tray_menu(m);
        let look = menu::tray_icon(m);
        let icon = TrayIconBuilder::new()
            .with_id("main-tray")
            .with_icon(icon(look))
            .with_tooltip("Stigmer")
            .with_menu(Box::new(build_menu(&items).map_err(|e| e.to_string())?))
            .with_menu_on_left_click(true)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Tray {
            icon,
            shown: Some((items, look)),
        })
    }

    /// Show `m`; only what changed is rebuilt, unless `force`.
    pub fn show(&mut self, m: &AppModel, force: bool) {
        let wanted = (menu::tray_menu(m), menu::tray_icon(m));
        let same = self.shown.as_ref();
        if !force && same.is_some_and(|s| *s == wanted) {
            return;
        }
        if force || same.is_none_or(|s| s.0 != wanted.0) {
            match build_menu(&wanted.0) {
                Ok(menu) => self.icon.set_menu(Some(Box::new(menu))),
                Err(e) => tracing::warn!("tray menu not updated: {e}"),
            }
        }
        if force || same.is_none_or(|s| s.1 != wanted.1) {
            let _ = self.icon.set_icon(Some(icon(wanted.1)));
        }
        self.shown = Some(wanted);
    }
}

/// The newest state not yet sent to the tray: agents can start hundreds of commands a second,
/// and each start and end changes the model.
static PENDING: Mutex<Option<AppModel>> = Mutex::new(None);
/// The tray follows the model at most this often (the newest state always shows).
const EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Show `m` in the tray, soon: changes within [`EVERY`] are shown once, as the last one.
pub fn update(ui: &Mutex<EventLoopProxy<UiEvent>>, m: &AppModel) {
    let first = PENDING.lock().replace(m.clone()).is_none();
    if first {
        let ui = ui.lock().clone();
        tokio::spawn(async move {
            tokio::time::sleep(EVERY).await;
            let newest = PENDING.lock().take();
            if let Some(m) = newest {
                let _ = ui.send_event(UiEvent::Show {
                    model: Box::new(m),
                    force: false,
                });
            }
        });
    }
}

pub fn is_mode_item(id: &str) -> bool {
    use crate::menu::ids;
    [
        ids::MODE_LOCAL,
        ids::MODE_PROTECTED,
        ids::MODE_BASIC,
        ids::MODE_CUSTOM,
        ids::NET_OPEN,
        ids::NET_NONE,
        ids::NET_ALLOWLIST,
    ]
    .contains(&id)
}
