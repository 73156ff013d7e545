// Sign-in for a browser session (cookie + CSRF token), with the one-time code administrators need.
import { api, boot, errorText } from "./common.js";

const form = document.getElementById("signin-form");
form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const data = new URLSearchParams(new FormData(form));
  if (!data.get("otp")) data.delete("otp");
  const error = document.getElementById("signin-error");
  error.textContent = "";
  try {
    await api("/api/auth/session", { method: "POST", form: data });
    window.location.href = boot.next || "/";
  } catch (err) {
    error.textContent = errorText(err);
  }
});
