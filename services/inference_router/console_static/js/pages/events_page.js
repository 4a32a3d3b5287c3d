// Events: the org's live feed from /v1/events (the one stream the console keeps open), newest first.

import { el, field, page, replace } from "../dom.js";
import { feed } from "../events.js";

export function renderEvents() {
  const filter = el("select", { id: "events-filter" },
    [["", "all"], ["lora.", "lora.*"], ["lora.validation.finished", "lora.validation.finished"], ["file.", "file.*"]]
      .map(([prefix, label]) => el("option", { value: prefix }, label)));
  const state = el("p", { class: "hint", role: "status" });
  const list = el("ol", { class: "events", id: "events-list", "aria-live": "polite", "aria-relevant": "additions" });
  page("Events", el("p", { class: "hint" },
    "What happens in your organisation as it happens: LoRAs created, updated, validated and deleted; files " +
    "created and deleted. Kept while this tab is open."), field("Show", filter), state, list);

  const shown = (event) => !filter.value || event.type.startsWith(filter.value);
  const draw = () => replace(list, feed.recent.filter(shown).map(item));
  filter.addEventListener("change", draw);
  draw();
  const stopState = feed.onState((value, error) => {
    state.textContent = value === "live" ? "Connected: new events appear here." :
      `Stream ${value}${error ? `: ${error.message}` : ""}`;
  });
  const unsubscribe = feed.subscribe((event) => {
    if (!event.type.startsWith("stream.") && shown(event)) list.prepend(item(event));
  });
  return () => {
    unsubscribe();
    stopState();
  };
}

function item(event) {
  const data = event.data || {};
  const subject = data.lora?.name || data.file?.filename || data.filename || data.id || "";
  const validation = data.validation;
  const when = event.cloudEvent?.time ? new Date(event.cloudEvent.time) : null;
  return el("li", { class: "event", "data-type": event.type },
    el("div", {},
      when ? el("time", { datetime: when.toISOString() }, when.toLocaleTimeString()) : null, " ",
      el("code", {}, event.type), " ", subject ? el("strong", {}, subject) : null,
      validation ? ` on ${validation.model}: ${validation.status}${validation.result_code ? ` (${validation.result_code})` : ""}` : null),
    el("details", {}, el("summary", {}, "Event"), el("pre", { class: "code" }, JSON.stringify(event.cloudEvent, null, 2))));
}
