//! The tray: its menu is built from [`menu::tray_menu`], and its items call the same functions
//! as the window's buttons.

use tauri::image::Image;
use tauri::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Wry};

use crate::menu::{self, ids, Item, TrayIcon};
use crate::model;

pub const TRAY_ID: &str = "main-tray";

fn icon(state: TrayIcon) -> Image<'static> {
    let bytes: &[u8] = match state {
        TrayIcon::Stopped => include_bytes!("../../icons/tray-stopped.png"),
        TrayIcon::Running => include_bytes!("../../icons/tray-running.png"),
        TrayIcon::Downloading => include_bytes!("../../icons/tray-downloading.png"),
        TrayIcon::Waiting => include_bytes!("../../icons/tray-waiting.png"),
        TrayIcon::Error => include_bytes!("../../icons/tray-error.png"),
    };
    Image::from_bytes(bytes).expect("tray icons are valid PNGs")
}

fn build_menu(app: &AppHandle, items: &[Item]) -> tauri::Result<Menu<Wry>> {
    let mut built: Vec<Box<dyn IsMenuItem<Wry>>> = Vec::new();
    for item in items {
        match item {
            Item::Label { id, text } => built.push(Box::new(MenuItem::with_id(
                app,
                *id,
                text,
                false,
                None::<&str>,
            )?)),
            Item::Action { id, text, enabled } => built.push(Box::new(MenuItem::with_id(
                app,
                *id,
                text,
                *enabled,
                None::<&str>,
            )?)),
            Item::Check {
                id,
                text,
                checked,
                enabled,
            } => built.push(Box::new(CheckMenuItem::with_id(
                app,
                *id,
                text,
                *enabled,
                *checked,
                None::<&str>,
            )?)),
            Item::Separator => built.push(Box::new(PredefinedMenuItem::separator(app)?)),
        }
    }
    let refs: Vec<&dyn IsMenuItem<Wry>> = built.iter().map(|b| b.as_ref()).collect();
    Menu::with_items(app, &refs)
}

/// `on_click` gets the id of the item clicked (the tray knows menus, not what they do).
pub fn install(
    app: &AppHandle,
    m: &model::AppModel,
    on_click: impl Fn(&AppHandle, &str) + Send + Sync + 'static,
) -> tauri::Result<()> {
    let menu = build_menu(app, &menu::tray_menu(m))?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(menu::tray_icon(m)))
        .tooltip("Stigmer")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(move |app, event| on_click(app, event.id().as_ref()))
        .build(app)?;
    Ok(())
}

/// Rebuild menu and icon from the state. Check items are rebuilt too, so the three modes stay
/// mutually exclusive whatever was clicked.
/// The newest state not yet shown, and what the tray shows: agents can start hundreds of
/// commands a second, and each start and end changes the model.
static PENDING: parking_lot::Mutex<Option<model::AppModel>> = parking_lot::Mutex::new(None);
static SHOWN: parking_lot::Mutex<Option<(Vec<Item>, TrayIcon)>> = parking_lot::Mutex::new(None);
/// The tray follows the model at most this often (the newest state always shows).
const EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Show `m` in the tray, soon: changes within [`EVERY`] are shown once, as the last one.
pub fn update(app: &AppHandle, m: &model::AppModel) {
    let first = PENDING.lock().replace(m.clone()).is_none();
    if first {
        let app = app.clone();
        tauri::async_runtime::spawn(async move {
            tokio::time::sleep(EVERY).await;
            let newest = PENDING.lock().take();
            if let Some(m) = newest {
                show(&app, &m, false);
            }
        });
    }
}

/// Show `m` now, even if it looks shown: a check item toggles itself when clicked.
pub fn refresh(app: &AppHandle, m: &model::AppModel) {
    show(app, m, true);
}

fn show(app: &AppHandle, m: &model::AppModel, force: bool) {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return;
    };
    let wanted = (menu::tray_menu(m), menu::tray_icon(m));
    let mut shown = SHOWN.lock();
    let same = shown.as_ref();
    if !force && same.is_some_and(|s| *s == wanted) {
        return;
    }
    if force || same.is_none_or(|s| s.0 != wanted.0) {
        match build_menu(app, &wanted.0) {
            Ok(menu) => {
                let _ = tray.set_menu(Some(menu));
            }
            Err(e) => tracing::warn!("tray menu not updated: {e}"),
        }
    }
    if force || same.is_none_or(|s| s.1 != wanted.1) {
        let _ = tray.set_icon(Some(icon(wanted.1)));
    }
    *shown = Some(wanted);
}

pub fn is_mode_item(id: &str) -> bool {
    [
        ids::MODE_LOCAL,
        ids::MODE_BASIC,
        ids::MODE_CUSTOM,
        ids::NET_OPEN,
        ids::NET_NONE,
        ids::NET_ALLOWLIST,
    ]
    .contains(&id)
}
