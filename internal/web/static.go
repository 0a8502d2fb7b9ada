package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// staticFS holds the pages' scripts, served under /static/.
//
//go:embed static
var staticFS embed.FS

// staticFile is one embedded file as served.
type staticFile struct {
	data        []byte
	version     string
	contentType string
}

// staticType is the content type of a file served under /static/, ""
// for a kind of file not served.
func staticType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	return ""
}

// contentVersion names a file's content, for addresses that change when it
// does.
func contentVersion(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}

// staticURL is the address of the embedded file static/name, carrying its
// content's version so that browsers may keep it for as long as it is the
// same.
func staticURL(name string) string {
	data, err := staticFS.ReadFile("static/" + name)
	if err != nil {
		return "/static/" + name
	}
	return "/static/" + name + "?v=" + contentVersion(data)
}

// staticFiles serves the embedded files: asked under their current version
// (staticURL), they may be cached for a year; under any other address they
// must be revalidated (by ETag).
func (s *server) staticFiles() http.Handler {
	files := map[string]staticFile{}
	entries, _ := fs.ReadDir(staticFS, "static") // the directory is embedded: no error
	for _, e := range entries {
		data, err := staticFS.ReadFile("static/" + e.Name())
		if typ := staticType(e.Name()); err == nil && typ != "" {
			files[e.Name()] = staticFile{data: data, version: contentVersion(data), contentType: typ}
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.PathValue("name")]
		if !ok {
			s.routeErrorPage(w, r, http.StatusNotFound)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("ETag", `"`+f.version+`"`)
		if r.URL.Query().Get("v") == f.version {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		http.ServeContent(w, r, r.PathValue("name"), time.Time{}, bytes.NewReader(f.data))
	})
}
