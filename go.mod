module github.com/synod-db/synod

go 1.26
