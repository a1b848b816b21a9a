// The image upload with a progress bar: the form's fields are posted first (the dashboard
// makes the image and answers its id), then the file goes as the body of one PUT, which the
// dashboard streams on to the Image API; XMLHttpRequest reports the upload's progress. Without
// this script the form is a plain multipart post.
"use strict";
(function () {
  const form = document.getElementById("image-form");
  if (!form || !window.XMLHttpRequest || !window.fetch) return;
  const file = document.getElementById("image-file");
  const box = document.getElementById("upload-progress");
  const bar = document.getElementById("upload-bar");
  const percent = document.getElementById("upload-percent");
  const submit = document.getElementById("image-create");
  const csrf = form.querySelector("input[name=csrf_token]").value;

  function clearErrors() {
    form.querySelectorAll(".field-error").forEach((p) => p.remove());
    form.querySelectorAll("[aria-invalid]").forEach((el) => {
      el.removeAttribute("aria-invalid");
      el.removeAttribute("aria-describedby");
    });
    document.getElementById("image-form-message").textContent = "";
  }

  function showErrors(body) {
    const errors = (body && body.errors) || {};
    for (const [name, message] of Object.entries(errors)) {
      const input = document.getElementById("image-" + name);
      const p = document.createElement("p");
      p.className = "field-error";
      p.id = name + "-error";
      p.setAttribute("role", "alert");
      p.textContent = message;
      if (input) {
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", p.id);
        input.after(p);
      } else {
        form.prepend(p);
      }
    }
    const text = (body && body.message) || (Object.keys(errors).length ? "" : "The upload failed.");
    if (text) {
      const p = document.createElement("p");
      p.className = "flash error";
      p.id = "form-error";
      p.setAttribute("role", "alert");
      p.textContent = text;
      document.getElementById("image-form-message").replaceChildren(p);
    }
    submit.disabled = false;
    box.hidden = true;
  }

  function upload(url, chosen) {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      const done = Math.round((100 * event.loaded) / event.total);
      bar.value = done;
      percent.textContent = done + "%";
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        bar.value = 100;
        percent.textContent = "100%";
        window.location.assign(body.next);
      } else {
        showErrors(body);
      }
    });
    xhr.addEventListener("error", () => showErrors({ message: "The connection failed during the upload." }));
    box.hidden = false;
    xhr.send(chosen);
  }

  form.addEventListener("submit", (event) => {
    const chosen = file.files && file.files[0];
    if (!chosen) return; // a record without data: the plain post does it
    event.preventDefault();
    clearErrors();
    submit.disabled = true;
    const fields = new URLSearchParams();
    for (const name of ["csrf_token", "name", "disk_format", "visibility"]) {
      fields.set(name, form.elements[name].value);
    }
    fetch(form.action, {
      method: "POST",
      body: fields,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then((resp) => resp.json().then((body) => ({ ok: resp.ok, body })))
      .then(({ ok, body }) => (ok ? upload(body.upload, chosen) : showErrors(body)))
      .catch(() => showErrors({ message: "The dashboard could not be reached." }));
  });
})();
