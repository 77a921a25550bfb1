// The custom tier without a terminal: pick an image the engine has, or build one from a
// Dockerfile chosen with the system's file picker. A build shows in the "Sandbox image" card
// as any preparation (step K of N, Cancel); once built it is the custom image. Home's `setMode`
// is handed to `setupCustom`.
import { $, el, humanBytes, invoke, showError } from "./dom.js";
import { current } from "./state.js";

let customFile = null;
let customBuilding = null;
let localImagesLoaded = false;

async function loadLocalImages() {
  localImagesLoaded = true;
  let list = [];
  try { list = (await invoke("get_local_images")).images; } catch (_) { /* no engine: a typed name still works */ }
  const sel = $("custom-have");
  const model = current();
  const keep = model && model.tier === "custom" ? model.image : sel.value;
  sel.replaceChildren(
    el("option", { value: "", textContent: list.length ? "Choose an image you have…" : "No images on this computer yet" }),
    ...list.map((i) => el("option", { value: i.image, textContent: `${i.image} (${humanBytes(i.size_bytes)})` })));
  sel.value = list.some((i) => i.image === keep) ? keep : "";
  sel.disabled = list.length === 0;
}

// A name for the image from the Dockerfile's folder: /home/me/tools/Dockerfile -> tools-sandbox:latest.
function suggestedName(path) {
  const folder = path.split(/[\\/]/).slice(-2, -1)[0] || "";
  const base = folder.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[-._]+|[-._]+$/g, "");
  return `${base || "my"}-sandbox:latest`;
}

// The custom row is visible: list the images once, and show the one in use.
export function customShown() {
  if (!localImagesLoaded) return loadLocalImages();
  const sel = $("custom-have");
  const model = current();
  if (model && model.tier === "custom" && document.activeElement !== sel) {
    sel.value = sel.querySelector(`option[value="${CSS.escape(model.image)}"]`) ? model.image : "";
  }
}

// An image download or build ended (an event from the server).
export function customImageFinished(ev) {
  loadLocalImages();
  if (ev.image !== customBuilding) return;
  customBuilding = null;
  $("custom-file").textContent = ev.ok ? `Built ${ev.image}: commands now run in it.` : "";
}

export function setupCustom(setMode) {
  $("custom-have").addEventListener("change", () => {
    const image = $("custom-have").value;
    if (!image) return;
    $("custom-image").value = image;
    setMode("custom", image);
  });
  $("custom-pick").addEventListener("click", async () => {
    const path = await invoke("pick_dockerfile");
    if (!path) return;
    customFile = path;
    $("custom-file").textContent = path;
    $("custom-build-row").hidden = false;
    $("custom-build-name").value = suggestedName(path);
    $("custom-build-name").focus();
  });
  const build = async () => {
    const image = $("custom-build-name").value.trim();
    $("mode-error").hidden = true;
    const why = await invoke("check_image", { image });
    if (why) {
      $("custom-build-name").setAttribute("aria-invalid", "true");
      showError($("mode-error"), { code: "INVALID_SETTING", message: `"${image}" is not an image name: ${why}. Use a name like my-sandbox:latest` });
      return;
    }
    $("custom-build-name").removeAttribute("aria-invalid");
    try {
      await invoke("build_image", { dockerfile: customFile, image });
      customBuilding = image;
      $("custom-build-row").hidden = true;
      $("custom-file").textContent = `Building ${image} from ${customFile}: once it is built, commands run in it.`;
    } catch (e) {
      showError($("mode-error"), e);
    }
  };
  $("custom-build").addEventListener("click", build);
  $("custom-build-name").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); build(); } });
}
