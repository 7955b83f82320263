//! What the request asks for, checked before anything inspects or forwards it: the model
//! against the route's and the consumer's lists, the prompt's form and size, then the rates,
//! where the prompt and the declared completion budget are charged (and the completion part
//! reserved, to be given back if the request is refused before anything is generated).

use super::admission::Admitted;
use super::{Exchange, Reserved};
use crate::limits::Exceeded;
use crate::openai::ApiRequest;
use crate::proxy::endpoints::{default_reservation, deployment_in, generates, model_in_path};
use crate::refusal::Refusal;
use crate::tokens;
use std::time::Instant;

/// The model the body names, once it and the deployment the path names (if any) passed the
/// route's and the consumer's lists.
pub(super) fn models(
    x: &mut Exchange,
    a: &Admitted,
    api: Option<&ApiRequest>,
    path: &str,
) -> Result<Option<String>, Refusal> {
    // Models: the route's list, then the consumer's. Where a list applies, a body must
    // name its model (a backend would otherwise pick its default, whatever the lists say).
    // Azure OpenAI-style paths name the model (the deployment) in the path and ignore the
    // body's `model`: both names must pass the lists.
    // A model's metadata (`GET …/v1/models/{id}`) names the model in the path: a consumer
    // learns only about models it may use. Before, the lists were not applied to it.
    let (route, rights) = (&a.route, &a.rights);
    let deployment = deployment_in(path).or_else(|| model_in_path(path));
    let model = api.and_then(|a| a.model.clone());
    x.log.model = model.clone().or_else(|| deployment.clone());
    let listed = !route.models.is_empty() || rights.as_ref().is_some_and(|r| !r.models.is_empty());
    if api.is_some() && model.is_none() && deployment.is_none() && listed {
        return Err(Refusal::new(
            400,
            "invalid_request_error",
            "model_required",
            "The request must name its `model`.",
        ));
    }
    for m in model.iter().chain(deployment.iter()) {
        if !route.models.is_empty() && !route.models.contains(m) {
            return Err(Refusal::new(
                404,
                "invalid_request_error",
                "model_not_found",
                format!("The model `{m}` does not exist or you do not have access to it."),
            ));
        }
        if let Some(r) = rights {
            if !r.models.is_empty() && !r.models.contains(m) {
                return Err(Refusal::new(
                    403,
                    "permission_error",
                    "model_not_allowed",
                    format!("You are not allowed to use the model `{m}`."),
                ));
            }
        }
    }
    Ok(model)
}

/// Refuses a prompt the route cannot check (token ids) or that passes its size limit.
pub(super) fn prompt(a: &Admitted, api: Option<&ApiRequest>) -> Result<(), Refusal> {
    // A prompt given as token ids is text the guard and the size limit cannot read.
    if api.is_some_and(|a| a.token_ids > 0) && (a.route.guard.is_some() || a.max_prompt.is_some()) {
        return Err(Refusal::new(
            400,
            "invalid_request_error",
            "token_prompt_not_allowed",
            "This route accepts prompts as text only, not as token ids.",
        ));
    }
    if let (Some(api), Some(max)) = (api, a.max_prompt) {
        if api.prompt_chars() > max {
            return Err(Refusal::new(
                400,
                "invalid_request_error",
                "prompt_too_long",
                format!("The prompt is longer than {max} characters."),
            ));
        }
    }
    Ok(())
}

/// Admits the request under the route's rates and returns the tokens charged, reserving
/// the completion part on the exchange (given back if it is refused before generating).
pub(super) fn charge(
    x: &mut Exchange,
    a: &Admitted,
    api: Option<&ApiRequest>,
    model: Option<&str>,
    path: &str,
) -> Result<u64, Refusal> {
    // Rates: requests per second and prompt tokens per minute.
    // The charge is the prompt (text and token ids) plus the completion budget the request
    // declares (`max_tokens` × `n`), so that concurrent requests cannot each be admitted
    // on their prompt alone and overdraw together; the usage reported replaces it after.
    let prompt_tokens = api
        .map(|a| tokens::prompt_tokens(model.unwrap_or(""), &a.prompts).saturating_add(a.token_ids))
        .unwrap_or(0);
    if api.is_some() {
        x.log.prompt_tokens = Some(prompt_tokens);
    }
    // A request that declares no budget (or an unbounded one) reserves
    // `default_reservation` per choice where it generates text.
    let default_budget = if generates(path) {
        default_reservation(a.limits.tokens_per_minute)
    } else {
        0
    };
    let charged =
        prompt_tokens.saturating_add(api.map_or(0, |a| a.completion_budget(default_budget)));
    let charged = match x.shared.limiter.admit(
        &a.route.name,
        &a.limit_key,
        &a.limits,
        charged,
        Instant::now(),
    ) {
        Ok(taken) => taken,
        Err(e) => {
            let (kind, msg) = match e {
                Exceeded::Requests(_) => ("requests", "Rate limit reached for requests."),
                Exceeded::Tokens(_) => ("tokens", "Rate limit reached for tokens per minute."),
            };
            let mut r = Refusal::new(429, kind, "rate_limit_exceeded", msg);
            r.retry_after = Some(e.retry_after());
            return Err(r);
        }
    };
    if a.limits.tokens_per_minute.is_some() && charged > prompt_tokens {
        x.reserved = Some(Reserved {
            route: a.route.name.clone(),
            key: a.limit_key.clone(),
            limits: a.limits,
            tokens: charged - prompt_tokens,
        });
    }
    Ok(charged)
}
