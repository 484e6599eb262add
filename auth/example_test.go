package auth_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/auth"
)

// An HS256 verifier wired into the server's options: OnAuth authenticates
// the upgrade request (?access_token= or Authorization: Bearer), and
// VerifyToken checks the accessToken of join_room.
func Example() {
	v, err := auth.New(context.Background(), &auth.Options{
		Secret:   []byte(os.Getenv("LIVESYNC_JWT_SECRET")), // at least 32 bytes
		Issuer:   "https://auth.example.com",
		Audience: "livesync",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	opts := livesync.Options{
		OnAuth:      v.OnAuth,
		VerifyToken: v.Verify,
	}
	_ = opts // pass &opts to the server
}

// A verifier for an identity provider's key set. New fails when the JWKS
// cannot be fetched, so a misconfigured server stops at start-up; cancelling
// ctx (or calling Close) stops the background refresh.
func ExampleNew_jwks() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := auth.New(ctx, &auth.Options{
		JWKSURL:  "https://idp.example.com/.well-known/jwks.json",
		Issuer:   "https://idp.example.com/",
		Audience: "livesync",
	})
	if err != nil {
		log.Printf("auth: %v", err)
		os.Exit(2)
	}
	_ = livesync.Options{OnAuth: v.OnAuth, VerifyToken: v.Verify}
}

func ExampleVerifier_Verify() {
	secret := []byte("an-example-secret-of-at-least-32-bytes")
	v, err := auth.New(context.Background(), &auth.Options{Secret: secret})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	// What an auth server would issue.
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":   "user-42",
		"name":  "Ada",
		"email": "ada@example.com",
		"rooms": []string{"team-7/*"},
		"exp":   time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	if err != nil {
		log.Fatal(err)
	}

	user, err := v.Verify(context.Background(), token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(user.UserID, user.Name, user.Email, user.Rooms)

	_, err = v.Verify(context.Background(), token[:len(token)-2]+"xx")
	fmt.Println(errors.Is(err, auth.ErrInvalidToken), errors.Is(err, auth.ErrUnavailable))
	// Output:
	// user-42 Ada ada@example.com [team-7/*]
	// true false
}
