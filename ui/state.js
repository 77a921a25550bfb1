// The last model the desktop shell sent (`stigmer://model`), for modules that draw from it.

let model = null;

export function current() {
  return model;
}

export function remember(m) {
  model = m;
}
