// A case's subjects: the people and companies under investigation.
import { el, label, table } from "../format.js";
import { subjectNotes } from "../offline.js";

const RISK = ["", "very low", "low", "medium", "high", "very high"];

export function render(ctx, kase) {
  const { root } = ctx;
  const editable = ctx.can("analyst", "admin"); // reviewers read the notes
  root.append(el("h2", { id: "tab-title" }, "Subjects"),
    table([
      { label: "Name", value: (s) => el("strong", {}, s.name) },
      { label: "Kind", value: (s) => label(s.kind) },
      { label: "Country", value: (s) => s.country || "–" },
      { label: "Risk", value: (s) => el("span", { class: `risk r${s.risk_level}` }, `${s.risk_level} · ${RISK[s.risk_level] || ""}`) },
      ...(editable ? [] : [{ label: "Notes", value: (s) => s.notes || "" }]),
    ], kase.subjects, { id: "subject-rows", caption: "Subjects", empty: "No subjects recorded for this case yet." }),
    el("p", { class: "hint" }, "Risk runs from 1 (very low) to 5 (very high), as the analyst assessed it."),
    // Edited through lockstep's outbox (offline.js): kept offline, shown at once, live.
    ...(editable ? [el("h3", {}, "Notes"), subjectNotes(ctx, kase)] : []));
}
