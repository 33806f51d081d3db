//! Single sign-on with an OpenID provider: the authorization-code flow with PKCE
//! (`openidconnect`), a nonce and a `state` bound to the browser, the ID token's
//! signature, issuer, audience, nonce and expiry checked, RP-initiated logout.
//!
//! `GET /login/sso` sends the browser to the provider; `GET /login/sso/callback` is where
//! it comes back (`<COUNTERSIGN_PUBLIC_URL>/login/sso/callback`, the address registered at
//! the provider). What the provider says of the person is decided by
//! `domain::sso` and applied by `service::sso` in one write transaction.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AdditionalProviderMetadata, AuthenticationFlow, AuthorizationCode, Client,
    ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadata, RedirectUrl, RequestTokenError, Scope,
    StandardErrorResponse, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};

use super::pages::{error_page, random_hex, safe_next, see_other, Layout};
use super::session::{self, SESSION_COOKIE};
use super::{with_conn, State};
use crate::config::OidcConfig;
use crate::domain::sso::{groups_of, Claims};
use crate::error::{AppError, ErrorCode};

/// The cookie that binds a sign-in at the provider to the browser that started it.
pub const SSO_COOKIE: &str = "cs_sso";
/// How long discovery (and its keys) are trusted before they are read again.
const METADATA_TTL: Duration = Duration::from_secs(300);
/// What the provider may take to answer.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `code` or `state` accepted.
const MAX_PARAM: usize = 4096;

/// The claims beyond the standard ones (the groups claim, whatever its name).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Extra {
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}
impl AdditionalClaims for Extra {}

/// Discovery's `end_session_endpoint` (RP-initiated logout), beyond the core metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogoutMetadata {
    #[serde(default)]
    end_session_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for LogoutMetadata {}

type Metadata = ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;
type IdFields = IdTokenFields<
    Extra,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenAnswer = StandardTokenResponse<IdFields, CoreTokenType>;
type OidcClient = Client<
    Extra,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenAnswer,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The relying party: the configuration, an HTTP client that follows no redirects, and
/// the provider's discovery document (with its keys), read again every few minutes and
/// when an ID token's signature does not verify (the provider may have rotated its keys).
pub struct Sso {
    pub config: OidcConfig,
    http: openidconnect::reqwest::Client,
    redirect: RedirectUrl,
    /// Where the provider sends the browser after logging out.
    after_logout: String,
    cache: Mutex<Option<(Instant, Metadata)>>,
}

/// A sign-in sent to the provider.
pub struct Authorize {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

fn unavailable(what: &str, e: &dyn std::error::Error) -> AppError {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    AppError::new(
        ErrorCode::SsoUnavailable,
        format!("The sign-in provider could not be used ({what}): {text}. Try again later, or ask an admin."),
    )
}

impl Sso {
    pub fn new(config: OidcConfig, public_url: &str) -> anyhow::Result<Sso> {
        let base = public_url.trim_end_matches('/');
        let redirect = RedirectUrl::new(format!("{base}/login/sso/callback"))?;
        let http = openidconnect::reqwest::Client::builder()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()?;
        IssuerUrl::new(config.issuer.clone())?;
        Ok(Sso {
            config,
            http,
            redirect,
            after_logout: format!("{base}/login"),
            cache: Mutex::new(None),
        })
    }

    /// The provider's origin (`scheme://host:port`), which the pages' CSP lets forms go to
    /// (logout is a form whose answer redirects to the provider).
    pub fn origin(issuer: &str) -> String {
        let rest = issuer.split_once("://");
        match rest {
            Some((scheme, r)) => {
                let host = r.split('/').next().unwrap_or_default();
                format!("{scheme}://{host}")
            }
            None => issuer.to_string(),
        }
    }

    async fn metadata(&self, fresh: bool) -> Result<Metadata, AppError> {
        if !fresh {
            if let Some((at, m)) = self
                .cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                if at.elapsed() < METADATA_TTL {
                    return Ok(m.clone());
                }
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| unavailable("its issuer URL", &e))?;
        let m = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| {
                unavailable(
                    &format!(
                        "reading {}/.well-known/openid-configuration",
                        self.config.issuer
                    ),
                    &e,
                )
            })?;
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), m.clone()));
        Ok(m)
    }

    fn client(&self, m: Metadata) -> OidcClient {
        OidcClient::from_provider_metadata(
            m,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose().to_string(),
            )),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    /// Where to send the browser: the provider's authorization endpoint with a fresh
    /// state, nonce and PKCE challenge.
    pub async fn authorize(&self) -> Result<Authorize, AppError> {
        let client = self.client(self.metadata(false).await?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client.authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in self.config.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        Ok(Authorize {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchange the code (with the PKCE verifier) and check the ID token: what the
    /// provider says of the person.
    pub async fn finish(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Claims, AppError> {
        let client = self.client(self.metadata(false).await?);
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| unavailable("its discovery names no token endpoint", &e))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => AppError::new(
                    ErrorCode::SsoInvalid,
                    format!(
                        "The provider refused to finish the sign-in: {}{}. Start again from the sign-in page.",
                        r.error(),
                        r.error_description().map(|d| format!(" ({d})")).unwrap_or_default()
                    ),
                ),
                other => unavailable("its token endpoint", &other),
            })?;
        let Some(token) = answer.extra_fields().id_token() else {
            return Err(AppError::new(
                ErrorCode::SsoUnavailable,
                "The provider's token answer has no ID token (is `openid` among the client's scopes?).",
            ));
        };
        let nonce = Nonce::new(nonce.to_string());
        let verified = match token.claims(&client.id_token_verifier(), &nonce) {
            Ok(c) => c.clone(),
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
                // Perhaps a key the provider rotated in since discovery was read.
                let again = self.client(self.metadata(true).await?);
                let verifier = again.id_token_verifier();
                let c = token
                    .claims(&verifier, &nonce)
                    .map_err(|e| invalid_token(&e))?
                    .clone();
                c
            }
            Err(e) => return Err(invalid_token(&e)),
        };
        let mut claims = Claims {
            subject: verified.subject().to_string(),
            email: verified.email().map(|e| e.to_string()),
            email_verified: verified.email_verified(),
            name: verified
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            groups: verified
                .additional_claims()
                .rest
                .get(&self.config.groups_claim)
                .map(groups_of),
        };
        if claims.email.is_none() || claims.groups.is_none() {
            self.add_userinfo(&client, &answer, &mut claims).await;
        }
        Ok(claims)
    }

    /// Fill what the ID token left out from the userinfo endpoint, when there is one (its
    /// answer must be about the same subject). A failure here leaves the claims as they are.
    async fn add_userinfo(&self, client: &OidcClient, answer: &TokenAnswer, claims: &mut Claims) {
        let Ok(req) = client.user_info(
            answer.access_token().clone(),
            Some(openidconnect::SubjectIdentifier::new(
                claims.subject.clone(),
            )),
        ) else {
            return;
        };
        let info: openidconnect::UserInfoClaims<Extra, CoreGenderClaim> = match req
            .request_async(&self.http)
            .await
        {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "single sign-on: the userinfo answer could not be used");
                return;
            }
        };
        if claims.email.is_none() {
            claims.email = info.email().map(|e| e.to_string());
            claims.email_verified = info.email_verified();
        }
        if claims.groups.is_none() {
            claims.groups = info
                .additional_claims()
                .rest
                .get(&self.config.groups_claim)
                .map(groups_of);
        }
        if claims.name.is_none() {
            claims.name = info.name().and_then(|n| n.get(None)).map(|n| n.to_string());
        }
    }

    /// The provider's logout address for a person who signed in through it (`None`:
    /// the provider has no RP-initiated logout, or cannot be reached now).
    pub async fn logout_url(&self) -> Option<String> {
        let m = self.metadata(false).await.ok()?;
        let end = m.additional_metadata().end_session_endpoint.clone()?;
        let query = serde_urlencoded::to_string([
            ("client_id", self.config.client_id.as_str()),
            ("post_logout_redirect_uri", self.after_logout.as_str()),
        ])
        .ok()?;
        let sep = if end.contains('?') { '&' } else { '?' };
        Some(format!("{end}{sep}{query}"))
    }
}

fn invalid_token(e: &openidconnect::ClaimsVerificationError) -> AppError {
    AppError::new(
        ErrorCode::SsoInvalid,
        format!("The provider's ID token failed its checks ({e}); nobody was signed in. Start again from the sign-in page, or ask an admin if it keeps happening."),
    )
}

fn sso_of(state: &State) -> Result<&Sso, AppError> {
    state
        .sso
        .as_deref()
        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "single sign-on is not configured here"))
}

#[derive(Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

/// `GET /login/sso`: remember the sign-in (state, nonce, PKCE verifier, where to go
/// after), bind it to this browser, and send the browser to the provider.
pub async fn start(req: HttpRequest, state: State, q: web::Query<StartQuery>) -> HttpResponse {
    let result = async {
        let sso = sso_of(&state)?;
        let a = sso.authorize().await?;
        let browser = random_hex();
        let next = safe_next(q.next.as_deref());
        let (s, b, n, v) = (
            a.state.clone(),
            browser.clone(),
            a.nonce.clone(),
            a.pkce_verifier.clone(),
        );
        with_conn(&state, move |conn| {
            crate::service::sso::begin(
                conn,
                &crate::service::sso::Started {
                    state: &s,
                    browser: &b,
                    nonce: &n,
                    pkce_verifier: &v,
                    next: &next,
                },
            )
        })
        .await?;
        let mut r = see_other(&a.url);
        let mut c = session::cookie(&req, &state, SSO_COOKIE, &browser);
        c.set_max_age(actix_web::cookie::time::Duration::minutes(
            crate::service::sso::LOGIN_MINUTES,
        ));
        let _ = r.add_cookie(&c);
        Ok::<_, AppError>(r)
    }
    .await;
    result.unwrap_or_else(|e| error_page(&req, Layout::anonymous(), &e))
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    /// RFC 9207: the issuer of the answer, when the provider says.
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /login/sso/callback`: the provider's answer. The sign-in it names is taken (once,
/// by this browser), the code exchanged, the ID token checked, the person signed in.
pub async fn callback(
    req: HttpRequest,
    state: State,
    q: web::Query<CallbackQuery>,
) -> HttpResponse {
    let q = q.into_inner();
    let result = async {
        let sso = sso_of(&state)?;
        let invalid = |m: String| AppError::new(ErrorCode::SsoInvalid, m);
        let st = q
            .state
            .filter(|s| !s.is_empty() && s.len() <= MAX_PARAM)
            .ok_or_else(|| invalid("The provider's answer has no usable `state`. Start again from the sign-in page.".into()))?;
        let browser = session::read_cookie(&req, &state, SSO_COOKIE);
        let login = with_conn(&state, move |conn| {
            crate::service::sso::take(conn, &st, browser.as_deref())
        })
        .await?;
        if let Some(iss) = q.iss.as_deref() {
            if iss.trim_end_matches('/') != sso.config.issuer {
                return Err(invalid(format!(
                    "The answer comes from the issuer {iss}, not from {}. Start again from the sign-in page.",
                    sso.config.issuer
                )));
            }
        }
        if let Some(err) = q.error {
            return Err(invalid(format!(
                "The provider did not sign you in: {}{}.",
                err.chars().take(200).collect::<String>(),
                q.error_description
                    .map(|d| format!(" ({})", d.chars().take(500).collect::<String>()))
                    .unwrap_or_default()
            )));
        }
        let code = q
            .code
            .filter(|c| !c.is_empty() && c.len() <= MAX_PARAM)
            .ok_or_else(|| invalid("The provider's answer has no usable `code`. Start again from the sign-in page.".into()))?;
        let claims = sso.finish(&code, &login.pkce_verifier, &login.nonce).await?;
        let (schema, oidc) = (state.schema.clone(), sso.config.clone());
        let signed = with_conn(&state, move |conn| {
            crate::service::sso::sign_in(conn, &schema, &oidc, &claims, session::SESSION_HOURS)
        })
        .await?;
        tracing::info!(user = signed.user_id, "signed in with single sign-on");
        let mut r = see_other(&login.next_path);
        let _ = r.add_cookie(&session::cookie(&req, &state, SESSION_COOKIE, &signed.session));
        let _ = r.add_cookie(&session::cookie(&req, &state, SSO_COOKIE, ""));
        Ok::<_, AppError>(r)
    }
    .await;
    result.unwrap_or_else(|e| {
        let mut r = error_page(&req, Layout::anonymous(), &e);
        let _ = r.add_cookie(&session::cookie(&req, &state, SSO_COOKIE, ""));
        r
    })
}
